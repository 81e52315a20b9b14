from services.monitoring.bootstrap import main

main()
