"""Launching the page: its temporary folder, Gradio's settings, and a clean stop.

Uploads and results live in one temporary folder (Gradio's `GRADIO_TEMP_DIR`
points into it), removed when the app stops, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from typing import Any


def _interrupt(signum: int, frame: Any) -> None:
    # Gradio stops its server on KeyboardInterrupt; SIGTERM then cleans up the same way.
    raise KeyboardInterrupt


def _preload(derainers, weights: str, precision: str) -> None:
    from tf_deraindrop.app.handlers import ModelError

    try:
        derainers.get(weights, precision, None)
    except ModelError as err:
        # The page says it again when the model is asked for.
        print(f"error: {err}", flush=True)


def launch(
    weights: str | None,
    models_dir: str | None,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_upload_mb: float = 200.0,
    precision: str = "auto",
    derain_options: dict | None = None,
) -> None:
    """Serves the page until interrupted, then removes the uploads and results.

    Args:
        weights: the generator file offered first, or None.
        models_dir: a folder of generator files, or None.
        host: the address to listen on (127.0.0.1: this computer only).
        port: the TCP port.
        max_upload_mb: the largest upload taken, in MB.
        precision: the page's first choice of precision.
        derain_options: passed to every Keras model's load (`max_pixels`).
    """
    workdir = tempfile.mkdtemp(prefix="deraindrop-app-")
    uploads = os.path.join(workdir, "uploads")
    os.makedirs(uploads)
    # Before Gradio is imported: it reads the variable then.
    os.environ["GRADIO_TEMP_DIR"] = uploads
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        from tf_deraindrop.app.handlers import Derainers
        from tf_deraindrop.app.page import PageConfig, build_page

        config = PageConfig(weights, models_dir, max_upload_mb, workdir, precision)
        derainers = Derainers(**(derain_options or {}))
        page = build_page(config, derainers)
        if weights:
            # Loaded while the page opens, so that the first upload does not wait for it.
            threading.Thread(
                target=_preload, args=(derainers, weights, precision), daemon=True
            ).start()
        print(f"Uploads and results go to {workdir} (removed when the app stops)", flush=True)
        page.queue().launch(
            server_name=host,
            server_port=port,
            max_file_size=int(max_upload_mb * 1e6),
            show_error=True,
            allowed_paths=[workdir],
        )
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(workdir, ignore_errors=True)
