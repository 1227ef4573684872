"""`python -m tf_deraindrop.distill`: the same command as `deraindrop distill` (`cli.distill`)."""

import sys

from tf_deraindrop.cli.distill import main

if __name__ == "__main__":
    sys.exit(main())
