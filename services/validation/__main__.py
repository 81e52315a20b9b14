from services.validation.bootstrap import main

main()
