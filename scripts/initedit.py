"""InitEdit: the always-on txt2img script. Thin: the work is in lib_initedit.webui."""
import modules.scripts as scripts
from modules import script_callbacks

from lib_initedit.webui import controller, settings, ui, xyz


class InitEditScript(scripts.Script):
    sorting_priority = 15

    def title(self):
        return "InitEdit"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        components, self.infotext_fields = ui.build_ui(self, is_img2img)
        self.paste_field_names = [controller.INFOTEXT_KEY]
        return components

    def process(self, p, *args):
        controller.on_process(p, args)

    def process_batch(self, p, *args, **kwargs):
        if not HAS_BEFORE_EVERY_SAMPLING:
            controller.on_process_batch(p)

    def before_hr(self, p, *args):
        if not HAS_BEFORE_EVERY_SAMPLING:
            controller.on_before_hr(p)

    def process_before_every_sampling(self, p, *args, **kwargs):
        controller.on_before_sampling(p, kwargs.get("x"), kwargs.get("noise"), kwargs.get("c"), kwargs.get("uc"))

    def postprocess(self, p, processed, *args):
        controller.on_postprocess(p, processed)


HAS_BEFORE_EVERY_SAMPLING = hasattr(scripts.Script, "process_before_every_sampling")
script_callbacks.on_ui_settings(settings.register)
script_callbacks.on_before_ui(xyz.register)
from lib_initedit.webui import api as initedit_api  # noqa: E402 - registration only

script_callbacks.on_app_started(initedit_api.register)
