from services.feature_store.bootstrap import main

main()
