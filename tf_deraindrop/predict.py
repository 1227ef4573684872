"""`python -m tf_deraindrop.predict`: the same command as `deraindrop predict` (`cli.predict`)."""

import sys

from tf_deraindrop.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
