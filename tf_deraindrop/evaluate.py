"""`python -m tf_deraindrop.evaluate`: the same as `deraindrop evaluate` (`cli.evaluate`)."""

import sys

from tf_deraindrop.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
