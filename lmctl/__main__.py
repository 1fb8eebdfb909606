from lmctl.cli import main

main()
