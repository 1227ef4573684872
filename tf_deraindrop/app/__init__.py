"""`deraindrop app`: a local web page that derains photos and videos.

Built on Gradio: it is what image-restoration demos are usually shared with,
so the page looks familiar; it brings the parts this page needs ready-made (a
before/after `ImageSlider`, video playback, file download, upload size
limits, progress bars and a request queue) with no JavaScript of our own; and
it is one `pip install` (the `app` extra).

The modules: `handlers` (what the page does, as plain functions that tests
call without a browser), `page` (the Gradio layout and callbacks), `server`
(the temporary folder and launch); the command line is `tf_deraindrop.cli.app`.

Example:
    $ pip install -e ".[app]"
    $ deraindrop app --weights gen.pkl        # then open http://127.0.0.1:7860
"""
