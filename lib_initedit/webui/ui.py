"""The InitEdit accordion: gradio layout around the JS box editor.

Only two components are script arguments: the accordion's toggle and a textbox holding the spec JSON.
Everything else (canvas, tabs, sliders, seed fields) is drawn by ``javascript/initedit*.js`` inside one
``gr.HTML`` root and only ever edits that textbox, so the API, infotext paste and X/Y/Z need no JS.
"""
from __future__ import annotations

import html
import json

import gradio as gr

from modules.ui_components import InputAccordion

from ..spec import INFOTEXT_KEY, SpecError, parse_infotext
from .api import VALIDATE_ROUTE
from .args import spec_facts

DEFAULT_SPEC = "{}"


def _root_html(tabname: str, spec_id: str, accordion_id: str) -> str:
    """The mount point that initedit.js fills in; ids travel as data attributes (no hard-coded ids in JS), and
    so do the spec's facts (keys, limits, choices, defaults from spec.py: the JS keeps no copy of them) and
    the route that validates a spec with the Python parser (relative, so a --subpath keeps working)."""
    attrs = {
        "class": "initedit-root",
        "data-tab": tabname,
        "data-spec-id": spec_id,
        "data-accordion-id": accordion_id,
        "data-spec-facts": json.dumps(spec_facts(), separators=(",", ":")),
        "data-validate-url": VALIDATE_ROUTE.lstrip("/"),
    }
    joined = " ".join(f'{k}="{html.escape(v, quote=True)}"' for k, v in attrs.items())
    return f"<div {joined}><div class='initedit-loading'>InitEdit editor loading…</div></div>"


def pasted_spec(params: dict):
    """The textbox value for a pasted infotext: its spec read as ``parse_infotext`` reads it (a field the
    image's spec lacks takes its LEGACY_VALUES, so an old image reproduces), written back in full by
    ``to_json``; a spec that does not parse is pasted as it is, so the accordion shows what is wrong."""
    if INFOTEXT_KEY not in params:
        return None
    raw = params[INFOTEXT_KEY]
    try:
        return parse_infotext(raw).to_json()
    except SpecError:
        return raw if isinstance(raw, str) else None


def build_ui(script, is_img2img: bool):
    """Build the accordion. Returns ``([enabled, spec_json], infotext_fields)``."""
    tabname = "img2img" if is_img2img else "txt2img"
    accordion_id = script.elem_id("enabled")
    spec_id = script.elem_id("spec")

    with InputAccordion(False, label="InitEdit", elem_id=accordion_id) as enabled:
        if hasattr(enabled, "extra"):  # header summary ("2 regions · 1 box"), kept up to date by initedit.js
            with enabled.extra():
                gr.HTML("<span class='initedit-summary'></span>", elem_classes=["initedit-summary-html"])
        if is_img2img:
            gr.HTML("<p class='initedit-note'>InitEdit edits the initial noise of txt2img; "
                    "it does not apply to img2img.</p>")
        else:
            gr.HTML(_root_html(tabname, spec_id, accordion_id), elem_classes=["initedit-html"])
        # hidden by CSS, not visible=False: gradio 4 would drop it from the DOM, and JS reads and writes it
        spec_json = gr.Textbox(
            value=DEFAULT_SPEC,
            label="InitEdit spec (JSON)",
            lines=2,
            elem_id=spec_id,
            elem_classes=["initedit-spec"],
        )

    infotext_fields = [
        (enabled, lambda d: INFOTEXT_KEY in d),
        (spec_json, pasted_spec),
    ]
    return [enabled, spec_json], infotext_fields
