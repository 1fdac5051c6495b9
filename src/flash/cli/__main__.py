from flash.cli.main import main

main()
