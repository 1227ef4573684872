"""`python -m tf_deraindrop.app`: the same as `deraindrop app` (`tf_deraindrop.cli.app`)."""

import sys

from tf_deraindrop.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
