// InitEdit: the panel's two tabs, Reroll and Layout, and their controls. Methods of the Panel
// (initedit_panel.js).
(function(ns) {
    "use strict";

    var proto = ns.panelMethods = ns.panelMethods || {}; // Panel.prototype (initedit_panel.js)
    var dom = ns.dom = ns.dom || {}; // initedit_dom.js: filled when it loads, used at call time

    // the Reroll tab: tools, regions, Keep the rest and its band, what a batch varies
    proto._buildReroll = function() {
        var self = this, hk = this.hooks, S = this.S, G = this.G, option = this._option.bind(this);
        this.seedWarn = dom.h("div", {class: "initedit-warn initedit-seed-warn", hidden: true}, [
            dom.h("span", {text: "⚠️ The main seed is -1: a reroll keeps the rest of the picture only with a fixed seed. "}),
            dom.button("Use a fixed seed", "Reuse the last seed (or pick one)", hk.fixSeed, "initedit-fix-seed"),
        ]);
        this.toolBox = dom.button("▭ Box", "Draw boxes", function() {
            self.setTool("box");
        }, "initedit-tool-box");
        this.toolBrush = dom.button("🖌️ Mask", "Paint a mask (right button or Alt erases)", function() {
            self.setTool("brush");
        }, "initedit-tool-brush");
        this.brushSize = dom.slider(G.clamp, "Brush", 0.04, 0.005, 0.2, 0.005, function(v) {
            self.editor.brush = v;
        }, "brush");
        this.eraseBox = dom.h("input", {type: "checkbox", "data-field": "erase", onchange: function(e) {
            self.editor.erase = e.target.checked;
        }});
        this.brushRow = dom.h("div", {class: "initedit-row initedit-brush-row", hidden: true}, [this.brushSize, dom.h("label", {class: "initedit-check"}, [this.eraseBox, "Erase"])]);
        this.vary = dom.h("select", {"data-field": "vary", onchange: function(e) {
            self.editor.setOption("vary", e.target.value);
        }}, [dom.h("option", {value: "seed", text: "the main seed (each image differs)"}), dom.h("option", {value: "reroll", text: "only the regions' seeds (the rest stays)"})]);
        this.rerollList = dom.h("div", {class: "initedit-list"});
        this.rerollItem = dom.h("div", {class: "initedit-item"});
        var keep = S.limits("keep");
        this.keep = dom.slider(G.clamp, "Keep the rest", S.DEFAULTS.keep, keep.min, keep.max, 0.05, option("keep"), "keep",
            "Fraction of the steps during which everything outside the regions (beyond the band) follows the image without the reroll " +
            "(0: only the initial noise is edited; 1: the outside is the image without the reroll to the end)");
        var band = S.limits("keep_band");
        this.keepBand = dom.slider(G.clamp, "Band", S.DEFAULTS.keep_band, band.min, band.max, 0.01, option("keep_band"), "keep_band",
            "Width of the band around the regions (fraction of the image's shorter side) that is released gradually, " +
            "nearest first, so the region blends into the rest; beyond it the rest follows for all the kept steps " +
            "(0: no band, a hard edge at keep 1)");
        this.rerollBody = dom.h("div", {class: "initedit-tab-body", "data-tab": "reroll"}, [
            this.seedWarn,
            dom.h("div", {class: "initedit-row"}, [this.toolBox, this.toolBrush, dom.h("span", {class: "initedit-spacer"}), dom.button("♻️ All", "Reuse every region's seed from the last generation (the image the gallery shows)", function() {
                self.reuseAllSeeds();
            }, "initedit-seed-reuse-all"), dom.button("Clear", "Remove all regions of this tab", function() {
                self.editor.clearAll();
            }, "initedit-clear")]),
            this.brushRow, this.rerollList, this.rerollItem,
            dom.h("div", {class: "initedit-row initedit-keep-row"}, [this.keep, this.keepBand]),
            dom.h("label", {class: "initedit-field"}, [dom.h("span", {text: "Batch varies"}), this.vary]),
        ]);
    };

    // the Layout tab: boxes, probe options (rounds, candidates, method, layers, heatmaps), guidance
    proto._buildLayout = function() {
        var self = this, S = this.S, G = this.G, option = this._option.bind(this);
        this.layoutList = dom.h("div", {class: "initedit-list"});
        this.layoutItem = dom.h("div", {class: "initedit-item"});
        var rounds = S.limits("rounds");
        this.rounds = dom.h("input", {type: "number", min: rounds.min, max: rounds.max, step: 1, value: S.DEFAULTS.rounds, class: "initedit-num", "data-field": "rounds", onchange: function(e) {
            var v = G.clamp(Math.round(parseFloat(e.target.value) || rounds.min), rounds.min, rounds.max);
            e.target.value = v;
            self.editor.setOption("rounds", v);
        }});
        var candidates = S.limits("candidates");
        this.candidates = dom.h("input", {type: "number", min: candidates.min, max: candidates.max, step: 1, value: S.DEFAULTS.candidates, class: "initedit-num", "data-field": "candidates",
            title: "Probe this many noises (the seed's and derived ones) and fill each box from the blocks that want its phrase most (each one more probe)", onchange: function(e) {
            var v = G.clamp(Math.round(parseFloat(e.target.value) || candidates.min), candidates.min, candidates.max);
            e.target.value = v;
            self.editor.setOption("candidates", v);
        }});
        this.method = dom.h("select", {"data-field": "method", onchange: function(e) {
            self.editor.setOption("method", e.target.value);
        }}, [dom.h("option", {value: "swap", text: "swap blocks"}), dom.h("option", {value: "rebuild", text: "rebuild"})]);
        this.layers = dom.h("select", {"data-field": "layers", title: "Which cross-attention layers the probe reads", onchange: function(e) {
            self.editor.setOption("layers", e.target.value);
        }}, [dom.h("option", {value: "level", text: "all layers of the level"}), dom.h("option", {value: "paper", text: "one layer (paper)"})]);
        this.heatmaps = dom.h("input", {type: "checkbox", "data-field": "heatmaps", onchange: function(e) {
            self.editor.setOption("heatmaps", e.target.checked);
        }});
        var guidance = S.limits("guidance"), gsteps = S.limits("guidance_steps");
        this.guidance = dom.slider(G.clamp, "Guidance", S.DEFAULTS.guidance, guidance.min, guidance.max, 0.5, option("guidance"), "guidance",
            "During sampling, pull each phrase's attention into its box: how strongly (0: off, the noise edit only)");
        this.guidanceSteps = dom.slider(G.clamp, "Guided steps", S.DEFAULTS.guidance_steps, gsteps.min, gsteps.max, 0.05, option("guidance_steps"),
            "guidance_steps", "Fraction of the steps, from the first, that are guided");
        this.layoutBody = dom.h("div", {class: "initedit-tab-body", "data-tab": "layout", hidden: true}, [
            dom.h("div", {class: "initedit-row initedit-hint"}, [dom.h("span", {text: "Draw a box per object, then pick its phrase from the prompt."}), dom.h("span", {class: "initedit-spacer"}), dom.button("Clear", "Remove all boxes of this tab", function() {
                self.editor.clearAll();
            }, "initedit-clear")]),
            this.layoutList, this.layoutItem,
            dom.h("div", {class: "initedit-row"}, [
                dom.h("label", {class: "initedit-field"}, [dom.h("span", {text: "Rounds"}), this.rounds]),
                dom.h("label", {class: "initedit-field"}, [dom.h("span", {text: "Candidates"}), this.candidates]),
                dom.h("label", {class: "initedit-field"}, [dom.h("span", {text: "Method"}), this.method]),
                dom.h("label", {class: "initedit-field"}, [dom.h("span", {text: "Layers"}), this.layers]),
                dom.h("label", {class: "initedit-check"}, [this.heatmaps, "Show probe heatmaps"]),
            ]),
            dom.h("div", {class: "initedit-row initedit-guidance-row"}, [this.guidance, this.guidanceSteps]),
        ]);
    };
})(window.InitEdit = window.InitEdit || {});
