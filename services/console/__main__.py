from services.console.bootstrap import main

main()
