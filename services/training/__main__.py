from services.training.bootstrap import main

main()
