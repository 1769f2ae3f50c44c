from bff.idp.cli import main

main()
