"""Test-only ComfyUI pack: registers a tiny SD1.5-like model config so that ComfyUI's own loaders
(CheckpointLoaderSimple) accept the lab's tiny random-weight checkpoint.

Why a config and not a full-width checkpoint: ComfyUI's model detection matches SD1.5 only at full width
(model_channels 320, context_dim 768) and builds its CLIP from the full ViT-L config, so a checkpoint it
recognises as SD1.5 weighs about 2 GB and runs a 64x64 latent in seconds per step on two CPU cores. This
config keeps SD1.5's block layout (4 levels, 2 res blocks each, cross-attention on the first three levels,
the probe layers ``input_blocks.7.1`` / ``8.1`` at latent/4, eps prediction, the SD1 tokenizer) at width 32,
a 2-layer CLIP of width 32 and TAESD as the VAE: a few MB, a step in milliseconds. Never installed outside
the lab (tests/tooling/comfy_lab.sh links it into the lab's custom_nodes).
"""
import comfy.sd1_clip as sd1_clip
import comfy.supported_models as supported_models
import comfy.supported_models_base as supported_models_base

WIDTH = 32  # UNet model_channels and CLIP hidden size (= the UNet's context_dim)
HEADS = 2

TINY_CLIP = {
    "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
    "eos_token_id": 49407, "hidden_act": "quick_gelu", "hidden_size": WIDTH, "initializer_factor": 1.0,
    "initializer_range": 0.02, "intermediate_size": 4 * WIDTH, "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": HEADS,
    "num_hidden_layers": 2, "pad_token_id": 1, "projection_dim": WIDTH, "torch_dtype": "float32",
    "vocab_size": 49408,
}

# The UNet as the builder makes it and as ComfyUI's detection reads it back (openaimodel.UNetModel kwargs).
UNET_KWARGS = dict(
    image_size=32, in_channels=4, model_channels=WIDTH, out_channels=4, num_res_blocks=[2, 2, 2, 2],
    channel_mult=[1, 2, 2, 2], num_heads=HEADS, num_head_channels=-1, use_spatial_transformer=True,
    transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    transformer_depth_middle=1, context_dim=WIDTH, use_linear_in_transformer=False, legacy=False,
)


class TinyClipModel(sd1_clip.SDClipModel):
    def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
        kwargs.pop("textmodel_json_config", None)
        super().__init__(device=device, dtype=dtype, model_options=model_options, textmodel_json_config=TINY_CLIP,
                         **kwargs)


class TinySD1ClipModel(sd1_clip.SD1ClipModel):
    def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
        super().__init__(device=device, dtype=dtype, model_options=model_options, clip_model=TinyClipModel, **kwargs)


class TinySD15(supported_models.SD15):
    unet_config = {
        "context_dim": WIDTH,
        "model_channels": WIDTH,
        "use_linear_in_transformer": False,
        "adm_in_channels": None,
        "use_temporal_attention": False,
    }
    unet_extra_config = {"num_heads": HEADS, "num_head_channels": -1}

    def clip_target(self, state_dict={}):
        return supported_models_base.ClipTarget(sd1_clip.SD1Tokenizer, TinySD1ClipModel)


if not any(getattr(m, "__name__", "") == "TinySD15" for m in supported_models.models):
    supported_models.models.append(TinySD15)


class InspectModel:
    """Test-only output node: what is left on a MODEL (the shared one from the loader) after sampling ran."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "after": ("LATENT",)}}

    RETURN_TYPES = ()
    FUNCTION = "inspect"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    def inspect(self, model, after):
        import json

        options = model.model_options
        transformer = options.get("transformer_options") or {}
        wrappers = {}  # the patcher's own wrappers and those copied into its options while it samples
        for table in (getattr(model, "wrappers", None) or {}, transformer.get("wrappers") or {}):
            for kind, keyed in table.items():
                wrappers.setdefault(kind, set()).update(key for key, items in keyed.items() if items)
        wrappers = {kind: sorted(keys) for kind, keys in wrappers.items() if keys}
        unet = model.model.diffusion_model
        own_forwards = [name for name, m in unet.named_modules() if "forward" in vars(m)]
        hooks = [name for name, m in unet.named_modules()
                 if m._forward_hooks or m._forward_pre_hooks]
        report = {"wrappers": wrappers, "options": sorted(options), "patches": sorted(transformer.get("patches", {})),
                  "patches_replace": sorted(transformer.get("patches_replace", {})), "own_forwards": own_forwards,
                  "hooks": hooks}
        return {"ui": {"text": [json.dumps(report)]}}


class PlainReplacePatch:
    """Test-only: an IPAdapter-style attn2 *replace* patch on every cross-attention of a clone, computing plain
    attention (so the image is the unpatched one, while ``attn2.forward`` never runs)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "testing"

    def patch(self, model):
        from comfy.ldm.modules.attention import optimized_attention

        def attention(q, k, v, extra_options):
            return optimized_attention(q, k, v, extra_options["n_heads"])

        clone = model.clone()
        unet = clone.model.diffusion_model
        groups = [("input", i, b) for i, b in enumerate(unet.input_blocks)] + [("middle", 0, unet.middle_block)]
        groups += [("output", i, b) for i, b in enumerate(unet.output_blocks)]
        for name, number, block in groups:
            for layer in block.modules():
                for index, _ in enumerate(getattr(layer, "transformer_blocks", None) or []):
                    clone.set_model_attn2_replace(attention, name, number, index)
        return (clone,)


NODE_CLASS_MAPPINGS = {"InitEditTestInspectModel": InspectModel, "InitEditTestPlainReplacePatch": PlainReplacePatch}
NODE_DISPLAY_NAME_MAPPINGS = {}
