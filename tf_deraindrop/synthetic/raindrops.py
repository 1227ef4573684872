"""Former name of `tf_deraindrop.synthetic.classic` (the classic renderer), kept for old imports.

New code renders with `tf_deraindrop.synthetic.render_raindrops`; this alias
gives the classic renderer, as `tf_deraindrop.synthetic.classic` does.
"""

from tf_deraindrop.synthetic.classic import (  # noqa: F401
    DEFAULT_PARAMS,
    MIN_SIDE,
    check_params,
    render_raindrops,
)
