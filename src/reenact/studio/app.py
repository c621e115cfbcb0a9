"""The ``reenact studio`` page (Gradio Blocks) over a :class:`~reenact.studio.session.StudioSession`.

Layout: the source portrait and the result side by side; below, an "Edit" tab with the model's sliders (LPMM:
one per LP parameter in standard deviations, presets, resets; PECHead: yaw / pitch / roll absolute or relative,
expression coefficients, expression from a second image) and a "Reenact a video" tab for every model. Sliders
render on release. Problems (no face, an unreadable upload, controls of another model) are shown in the page
as Gradio error messages; the server keeps running.

Element ids the browser test and a user's scripts rely on: ``source``, ``result``, ``slider-<name>`` (``p0``,
``yaw``, ``expr1``...), ``driving``, ``reenacted``, ``render-video``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reenact.studio.session import SliderSpec, StudioError, StudioSession

#: Sliders per collapsible group on the LPMM tab (40 parameters in ten-slider groups stay readable), per row.
GROUP_SIZE = 10
ROW_SIZE = 5
#: Tiny models render 64 px pictures: shown enlarged, pixels kept sharp.
PAGE_CSS = """
#source img, #result img, #expression-image img { width: 100%; height: 100%; object-fit: contain;
                                                  image-rendering: pixelated; }
"""


def _page_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Run a handler; a :class:`StudioError` or any other failure becomes a message in the page."""
    import gradio as gr

    @functools.wraps(function)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except StudioError as error:
            raise gr.Error(str(error)) from None
        except gr.Error:
            raise
        except Exception as error:  # noqa: BLE001 - the page must report, not crash, whatever went wrong
            raise gr.Error(f"{type(error).__name__}: {error}") from None

    return wrapped


def _slider(spec: SliderSpec) -> Any:
    import gradio as gr

    return gr.Slider(spec.minimum, spec.maximum, value=0.0, step=spec.step, label=spec.label,
                     elem_id=f"slider-{spec.name}", min_width=180)


def _shown(values: list[float]) -> list[float]:
    """Slider positions as displayed: two decimals (within a quarter step of the value, so still "unmoved")."""
    return [round(float(value), 2) for value in values]


def _positions(values: list[float], specs: list[SliderSpec]) -> list[Any]:
    """Slider updates to ``values``, each range widened to hold its value (the page would clamp it otherwise,
    and a clamped slider would count as moved)."""
    import gradio as gr

    return [gr.Slider(value=value, minimum=min(spec.minimum, value), maximum=max(spec.maximum, value))
            for value, spec in zip(_shown(values), specs, strict=True)]


def launch(app: Any, host: str = "127.0.0.1", port: int = 7860, allowed_paths: list[str] | None = None,
           block: bool = True) -> Any:
    """Serve ``app`` on ``host:port`` (never a public share link); ``block=False`` returns at once (tests)."""
    return app.queue().launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=True,
                              quiet=True, footer_links=[], allowed_paths=allowed_paths or [], css=PAGE_CSS,
                              prevent_thread_lock=not block)


def _example_images(folder: str | Path | None) -> list[str]:
    if folder is None:
        return []
    suffixes = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
    return sorted(str(p) for p in Path(folder).iterdir() if p.suffix.lower() in suffixes)[:24]


def build_app(session: StudioSession, examples: str | Path | None = None, output_dir: str | Path | None = None) -> Any:
    """The page for ``session``'s checkpoint; ``examples``: a folder of portraits offered as "pick a source"."""
    import gradio as gr

    title = f"reenact studio · {session.kind}"
    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f"# {title}\n`{session.checkpoint}` · {session.size} px · "
                    + ("sliders render when released" if session.editable
                       else f"{session.kind} has no edit controls: reenact a driving video below"))
        with gr.Row():
            with gr.Column():
                source = gr.Image(label="source (upload, paste or pick below)", type="numpy", image_mode="RGB",
                                  sources=["upload", "clipboard"], elem_id="source", height=320)
                crop = gr.Checkbox(label="crop the source to its face (as `reenact preprocess`)", value=False)
                pictures = _example_images(examples)
                if pictures:
                    gr.Examples(pictures, inputs=[source], label="pick a source")
            with gr.Column():
                result = gr.Image(label="result", type="numpy", interactive=False, elem_id="result", height=320,
                                  format="png")
        with gr.Tabs():
            if session.kind == "lpmm":
                _lpmm_tab(session, source, crop, result)
            elif session.kind == "pechead":
                _pechead_tab(session, source, crop, result)
            else:
                # `change` covers an upload, a paste, a picked example and clearing the picture.
                source.change(_page_errors(lambda image, cropped: None if image is None
                                           else session.set_source(image, cropped)), [source, crop], [result])
            _video_tab(session, output_dir)
    return app


def _lpmm_tab(session: StudioSession, source: Any, crop: Any, result: Any) -> tuple[list[Any], Any]:
    import gradio as gr

    specs = session.lpmm_sliders()
    pose_specs = session.lpmm_pose_sliders()
    with gr.Tab("Edit (LP parameters)"):
        base = gr.State("image")
        with gr.Row():
            reset_source = gr.Button("reset to the source's parameters", elem_id="reset-source")
            reset_base = gr.Button("reset to the base pose (p = 0)", elem_id="reset-base")
        with gr.Row():
            preset = gr.Dropdown(session.lpmm_preset_names(), label="expression preset", elem_id="preset")
            apply = gr.Button("apply preset", elem_id="apply-preset")
            preset_name = gr.Textbox(label="save the sliders' change as preset", placeholder="name")
            save = gr.Button("save preset", elem_id="save-preset")
        status = gr.Markdown(elem_id="status")
        if pose_specs:
            gr.Markdown("head pose in degrees (the pose map fitted from the training annotations)")
        else:
            gr.Markdown("no head-angle sliders: this checkpoint has no pose map (retrain to fit one)")
        with gr.Row():
            angles = [_slider(spec) for spec in pose_specs]
        sliders = []
        for start in range(0, len(specs), GROUP_SIZE):
            group = specs[start:start + GROUP_SIZE]
            with gr.Accordion(f"parameters {start + 1}-{start + len(group)} (standard deviations)",
                              open=start == 0):
                for row in range(0, len(group), ROW_SIZE):
                    with gr.Row():
                        sliders.extend(_slider(spec) for spec in group[row:row + ROW_SIZE])
    count = len(angles)

    def positions(values: list[float], base_mode: str) -> list[Any]:
        return [*_positions(session.lpmm_pose_reference(base_mode), pose_specs), *_positions(values, specs)]

    @_page_errors
    def load_source(image: Any, cropped: bool) -> list[Any]:
        if image is None:
            return [None, "image"] + [0.0] * (count + len(specs))
        session.set_source(image, cropped)
        values = _shown(session.lpmm_source_values())
        return [session.lpmm_render(values, "image"), "image", *positions(values, "image")]

    @_page_errors
    def render(base_mode: str, *values: float) -> Any:
        return session.lpmm_render(values[count:], base_mode, values[:count])

    @_page_errors
    def reset(base_mode: str) -> list[Any]:
        values = _shown(session.lpmm_reference(base_mode))
        return [session.lpmm_render(values, base_mode), base_mode, *positions(values, base_mode)]

    @_page_errors
    def apply_preset(name: str, base_mode: str, *values: float) -> list[Any]:
        moved = _shown(session.lpmm_apply_preset(name, values[count:]))
        return [session.lpmm_render(moved, base_mode, values[:count]), *_positions(moved, specs)]

    @_page_errors
    def save_preset(name: str, base_mode: str, *values: float) -> list[Any]:
        path = session.lpmm_save_preset(name, values[count:], base_mode)
        return [f"saved preset **{name.strip()}** in `{path}`",
                gr.Dropdown(choices=session.lpmm_preset_names(), value=name.strip())]

    every = [*angles, *sliders]
    source.change(load_source, [source, crop], [result, base, *every])  # upload, paste, example, clear
    crop.change(load_source, [source, crop], [result, base, *every])
    for slider in every:
        slider.release(render, [base, *every], [result])
    reset_source.click(lambda: "image", None, [base]).then(reset, [base], [result, base, *every])
    reset_base.click(lambda: "zero", None, [base]).then(reset, [base], [result, base, *every])
    apply.click(apply_preset, [preset, base, *every], [result, *sliders])
    save.click(save_preset, [preset_name, base, *every], [status, preset])
    return every, base


def _pechead_tab(session: StudioSession, source: Any, crop: Any, result: Any) -> tuple[list[Any], Any]:
    import gradio as gr

    pose_specs, expression_specs = session.pechead_sliders()
    with gr.Tab("Edit (head pose and expression)"):
        relative = gr.Checkbox(label="relative pose: angles added to the source's", value=False,
                               elem_id="relative-pose")
        with gr.Row():
            angles = [_slider(spec) for spec in pose_specs]
        with gr.Row():
            with gr.Column(scale=3):
                expressions = [_slider(spec) for spec in expression_specs]
            with gr.Column(scale=1):
                expression_image = gr.Image(label="expression from this image (optional)", type="numpy",
                                            image_mode="RGB", sources=["upload", "clipboard"],
                                            elem_id="expression-image", height=200)
        reset = gr.Button("reset to the source", elem_id="reset-source")
    sliders = [*angles, *expressions]

    specs = [*pose_specs, *expression_specs]

    def references(is_relative: bool) -> list[float]:
        pose, expression = session.pechead_reference(is_relative)
        return _shown([*pose, *expression])

    def render_now(is_relative: bool, values: list[float]) -> Any:
        return session.pechead_render(values[:3], is_relative, values[3:])

    @_page_errors
    def load_source(image: Any, cropped: bool, is_relative: bool) -> list[Any]:
        if image is None:
            return [None] + [0.0] * len(sliders)
        session.set_source(image, cropped)
        values = references(is_relative)
        return [render_now(is_relative, values), *_positions(values, specs)]

    @_page_errors
    def load_expression(image: Any, cropped: bool, is_relative: bool) -> list[Any]:
        session.set_expression_image(image, cropped)
        if session.source is None:
            return [None] + [0.0] * len(sliders)
        values = references(is_relative)
        return [render_now(is_relative, values), *_positions(values, specs)]

    @_page_errors
    def render(is_relative: bool, *values: float) -> Any:
        return render_now(is_relative, list(values))

    source.change(load_source, [source, crop, relative], [result, *sliders])  # upload, paste, example, clear
    crop.change(load_source, [source, crop, relative], [result, *sliders])
    relative.change(load_source, [source, crop, relative], [result, *sliders])
    reset.click(load_source, [source, crop, relative], [result, *sliders])
    expression_image.change(load_expression, [expression_image, crop, relative], [result, *sliders])
    for slider in sliders:
        slider.release(render, [relative, *sliders], [result])
    return sliders, relative


def _video_tab(session: StudioSession, output_dir: str | Path | None) -> None:
    import gradio as gr

    with gr.Tab("Reenact a video"):
        with gr.Row():
            driving = gr.Video(label="driving video", sources=["upload"], elem_id="driving")
            reenacted = gr.Video(label="reenacted (download with the button on the player)", interactive=False,
                                 elem_id="reenacted")
        with gr.Row():
            motion = gr.Radio(["absolute", "relative"], value="absolute", label="motion",
                              info="relative: the driving clip's change from its first frame, applied to the source")
            crop_driving = gr.Checkbox(label="crop the driving video to its face", value=False)
            render = gr.Button("render the video", variant="primary", elem_id="render-video")

    @_page_errors
    def run(path: str | None, mode: str, cropped: bool, progress: gr.Progress = gr.Progress()) -> str:  # noqa: B008
        progress(0.0, desc="reading the driving video")

        def report(done: int, total: int) -> None:
            progress(done / max(1, total), desc=f"animated {done} of {total} frames")

        return str(session.reenact_video(path, relative=mode == "relative", crop_driving=cropped,
                                         out_dir=output_dir, progress=report))

    render.click(run, [driving, motion, crop_driving], [reenacted])
