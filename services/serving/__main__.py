"""python -m services.serving: the serving service on MLOPS_SERVING_HOST:PORT (8006)."""

from services.serving.bootstrap import main

if __name__ == "__main__":
    main()
