"""Look at a model in the browser: ``python view.py -m MODEL [--ply FILE] [--port 8080]``."""

from gs_vq.cli.view import main

if __name__ == "__main__":
    main()
