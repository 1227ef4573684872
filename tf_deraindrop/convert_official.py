"""`python -m tf_deraindrop.convert_official`: the same as `deraindrop convert` (`cli.convert`)."""

import sys

from tf_deraindrop.cli.convert import main

if __name__ == "__main__":
    sys.exit(main())
