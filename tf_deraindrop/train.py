"""`python -m tf_deraindrop.train`: the same command as `deraindrop train` (`cli.train`)."""

import sys

from tf_deraindrop.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
