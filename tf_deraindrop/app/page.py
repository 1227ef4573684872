"""The app's page: its Gradio layout and the thin callbacks that call `handlers`.

Every error a user can cause (a file too large or of the wrong kind, a model
that does not load) is written in the status box under the buttons, and the
app goes on serving; the callbacks only move values between the page and
`tf_deraindrop.app.handlers`.

Import it after `GRADIO_TEMP_DIR` is set (`tf_deraindrop.app.server`):
Gradio reads it when imported.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import gradio as gr

from tf_deraindrop.app.handlers import (
    NO_MODEL_MESSAGE,
    PRECISIONS,
    Cancelled,
    Derainers,
    Jobs,
    ModelError,
    UploadError,
    check_upload,
    derain_photo,
    derain_video_file,
    find_models,
)

INTRO = (
    "# Raindrop removal\n"
    "Upload a photo or a short video taken through a rainy window or windscreen. "
    "Photos show rainy | derained under a slider and the attention map (where the "
    "model sees raindrops); videos keep their audio. Everything runs on this computer."
)


@dataclass
class PageConfig:
    """What the page needs from the command line.

    Attributes:
        weights: `--weights` (offered first), or None.
        models_dir: `--models-dir`, read again each time the page loads, or None.
        max_upload_mb: the largest upload taken, in MB.
        workdir: the app's temporary folder (outputs go in folders under it).
        precision: the precision first chosen on the page.
    """

    weights: str | None
    models_dir: str | None
    max_upload_mb: float
    workdir: str
    precision: str = "auto"


def _model_label(path: str) -> tuple[str, str]:
    return os.path.basename(path), path


def _photo_response(upload: str, derainer, out_dir: str, loaded: str) -> tuple:
    """The page's outputs for a derained photo: slider, heat map, no video, downloads, status."""
    result = derain_photo(upload, derainer, out_dir)
    files = [f for f in (result.output, result.heatmap_file) if f]
    return (
        gr.update(value=(result.rainy, result.derained), visible=True),
        gr.update(value=result.heatmap, visible=result.heatmap is not None),
        gr.update(value=None, visible=False),
        gr.update(value=files, visible=True),
        f"{result.summary}{loaded}. Engine: {result.engine}.",
    )


def _video_response(upload: str, derainer, out_dir: str, loaded: str, cancel, progress) -> tuple:
    """The page's outputs for a derained video: the player, its download, status."""
    outcome = derain_video_file(
        upload,
        derainer,
        out_dir,
        cancel=cancel,
        on_progress=lambda done, total: progress((done, total), unit="frames"),
    )
    notes = "".join(f"\n\n- {note}" for note in outcome.notes)
    hidden = gr.update(visible=False)
    return (
        hidden,
        hidden,
        gr.update(value=outcome.output, visible=True),
        gr.update(value=[outcome.output], visible=True),
        f"{outcome.summary}{loaded}. Engine: {outcome.engine}.{notes}",
    )


def _controls(config: PageConfig, models: list[str]) -> dict:
    """The left column: upload, model, precision, threads, the buttons and the status line."""
    upload = gr.File(label="Photo or short video", elem_id="upload")
    model = gr.Dropdown(
        choices=[_model_label(p) for p in models],
        value=models[0] if models else None,
        label="Model",
        info=None if models else NO_MODEL_MESSAGE,
        elem_id="model",
    )
    precision = gr.Radio(list(PRECISIONS), value=config.precision, label="Precision (Keras models)")
    threads = gr.Number(
        value=0, precision=0, minimum=0, label="Threads (.tflite models; 0: default)"
    )
    with gr.Row():
        run = gr.Button("Derain", variant="primary", elem_id="run")
        stop = gr.Button("Cancel", variant="stop", elem_id="cancel")
    status = gr.Markdown(elem_id="status")
    return dict(
        upload=upload,
        model=model,
        precision=precision,
        threads=threads,
        run=run,
        stop=stop,
        status=status,
    )


def _results() -> list:
    """The right column: the before/after slider, the heat map, the video, the downloads."""
    slider = gr.ImageSlider(label="Rainy | derained", type="numpy", format="png", elem_id="slider")
    heatmap = gr.Image(
        label="Attention (black 0, red, pale yellow 1)",
        format="png",
        interactive=False,
        elem_id="heatmap",
    )
    video = gr.Video(label="Derained video", visible=False, elem_id="video")
    download = gr.File(label="Download", file_count="multiple", elem_id="download")
    return [slider, heatmap, video, download]


def build_page(config: PageConfig, derainers: Derainers | None = None) -> gr.Blocks:
    """The page's `gr.Blocks`, ready to `launch`.

    Args:
        config: the command line's settings.
        derainers: the cache of loaded models (a new one by default).
    """
    derainers = derainers or Derainers()
    jobs = Jobs()
    models = find_models(config.weights, config.models_dir)

    def refresh_models(current: str | None):
        # Files copied into --models-dir since the app started appear on reload.
        found = find_models(config.weights, config.models_dir)
        value = current if current in found else (found[0] if found else None)
        return gr.update(choices=[_model_label(p) for p in found], value=value)

    # Gradio fills `progress` in through its default: its documented idiom.
    def derain(upload, model, precision, threads, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        hidden = gr.update(visible=False)
        try:
            kind = check_upload(upload, config.max_upload_mb)
            derainer, load_seconds = derainers.get(model, precision, int(threads or 0) or None)
            loaded = f"; model loaded in {load_seconds:.1f} s" if load_seconds else ""
            out_dir = tempfile.mkdtemp(prefix="result-", dir=config.workdir)
            if kind == "photo":
                return _photo_response(upload, derainer, out_dir, loaded)
            session = request.session_hash or "local"
            cancel = jobs.start(session)
            try:
                return _video_response(upload, derainer, out_dir, loaded, cancel, progress)
            finally:
                jobs.finish(session, cancel)
        except (UploadError, ModelError) as err:
            return hidden, hidden, hidden, gr.update(value=None), f"**Error:** {err}"
        except Cancelled:
            return hidden, hidden, hidden, gr.update(value=None), "Cancelled: nothing was written."

    def cancel(request: gr.Request):
        if jobs.cancel(request.session_hash or "local"):
            gr.Info("Cancelling at the next frame")

    with gr.Blocks(title="deraindrop", delete_cache=(3600, 3600)) as page:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1):
                controls = _controls(config, models)
            with gr.Column(scale=2):
                results = _results()
        inputs = [controls[k] for k in ("upload", "model", "precision", "threads")]
        outputs = [*results, controls["status"]]
        # Uploading starts the job; the button re-runs it with other settings.
        for trigger in (controls["upload"].upload, controls["run"].click):
            trigger(derain, inputs, outputs, concurrency_id="derain")
        controls["stop"].click(cancel, None, None, queue=False)
        page.load(refresh_models, controls["model"], controls["model"])
    return page
