from servegate.cli.main import main

main()
