// InitEdit: glue between the editor and the WebUI page. Mounts an editor in every `.initedit-root` that
// lib_initedit/webui/ui.py renders, mirrors the spec textbox both ways and follows the txt2img fields
// (width, height, prompt, seed). What the last generation left (info, seeds, notes) is read in
// initedit_last.js, the canvas background (gallery, file, drop) is set in initedit_background.js: methods
// of the same Mount prototype. The page helpers are in initedit_page.js.
(function(ns) {
    "use strict";

    // Mount.prototype, shared with initedit_last.js and initedit_background.js: whichever file loads first
    // makes it, so the order the WebUI loads them in does not matter
    var proto = ns.mountMethods = ns.mountMethods || {};
    var page = ns.page = ns.page || {}; // initedit_page.js: filled when it loads, used at call time

    // the server's facts about the spec (rendered by lib_initedit/webui/ui.py from spec.py) and the modules,
    // resolved now that every javascript/*.js has loaded
    function modules(root) {
        var facts = JSON.parse(root.dataset.specFacts || "null");
        return {spec: ns.spec.codec(facts), geometry: ns.geometry, mask: ns.mask};
    }

    function Mount(root) {
        this.root = root;
        this.tab = root.dataset.tab || "txt2img";
        this.specId = root.dataset.specId;
        this.accordionId = root.dataset.accordionId;
        this.validateUrl = root.dataset.validateUrl || null;
        this.mods = modules(root);
        this.S = this.mods.spec;
        this.lastText = null;
        this._validated = null;
        this._validateTimer = 0;
        this.bgMode = "blank";
        this.bgSrc = null;
        var self = this;
        this.panel = new ns.Panel(root, {
            loadLastImage: function() {
                self.bgMode = "last";
                self.bgSrc = null;
                self.followGallery(true);
            },
            openFile: function() {
                self.fileInput.click();
            },
            blank: function() {
                self.bgMode = "blank";
                self.editor.setBackground(null);
            },
            toggleJson: function() {
                var acc = page.byId(self.accordionId) || root;
                acc.classList.toggle("initedit-show-json");
            },
            lastSeed: function(i) {
                return self.lastResolvedSeed(i);
            },
            fixSeed: function() {
                self.fixMainSeed();
            },
            promptText: function() {
                return self.promptText();
            },
        }, this.mods);
        this.editor = new ns.Editor(this.panel.canvas, this.mods, {
            onCommit: function(text) {
                self.write(text);
            },
            onSelect: function() {
                self.panel.refresh();
            },
            promptText: function() {
                return self.promptText();
            },
        });
        this.panel.attach(this.editor);
        this.fileInput = Object.assign(document.createElement("input"), {type: "file", accept: "image/*", hidden: true});
        this.fileInput.addEventListener("change", function() {
            if (self.fileInput.files[0]) self.useFile(self.fileInput.files[0]);
            self.fileInput.value = "";
        });
        root.appendChild(this.fileInput);
        this._dropTarget(this.panel.wrap);
        if (window.ResizeObserver) {
            new ResizeObserver(function() {
                if (self.panel.wrap.clientWidth > 0) self.editor.layout();
            }).observe(this.panel.wrap);
        }
        this.sync();
    }

    Mount.prototype = proto;
    proto.constructor = Mount;

    proto.field = function(suffix, sel) {
        var el = page.byId(this.tab + "_" + suffix);
        return el ? el.querySelector(sel) : null;
    };

    proto.textarea = function() {
        var el = page.byId(this.specId);
        return el ? el.querySelector("textarea, input") : null;
    };

    proto.promptText = function() {
        var ta = this.field("prompt", "textarea");
        return ta ? ta.value : "";
    };

    // "2 regions · 1 box" in the accordion's header, so a closed accordion still says what it holds
    proto.summarize = function() {
        var acc = page.byId(this.accordionId), el = acc && acc.querySelector(".initedit-summary");
        if (!el) return;
        var sp = this.editor.spec, parts = [];
        var n = function(k, one, many) {
            if (k) parts.push(k + " " + (k === 1 ? one : many));
        };
        n(sp.reroll.length, "region", "regions");
        n(sp.layout.length, "box", "boxes");
        var text = parts.join(" · ");
        if (el.textContent !== text) el.textContent = text; // no DOM churn: the WebUI observes the page
    };

    // write the editor's JSON into the gradio textbox
    proto.write = function(text) {
        var ta = this.textarea();
        this.summarize();
        this.lastText = text;
        this.validateSoon(text);
        if (!ta || ta.value === text) return;
        ta.value = text;
        page.sendInput(ta);
    };

    // ask the server's parser (POST data-validate-url) about the spec, debounced; the answer is shown in the
    // panel before Generate. No URL (a page without the route), or no answer: nothing is shown.
    proto.validateSoon = function(text) {
        if (!this.validateUrl || typeof fetch !== "function" || text === this._validated) return;
        var self = this;
        clearTimeout(this._validateTimer);
        this._validateTimer = setTimeout(function() {
            self._validated = text;
            fetch(self.validateUrl, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({spec: text})})
                .then(function(r) {
                    return r.ok ? r.json() : null;
                })
                .then(function(res) {
                    if (res && self._validated === text) self.panel.setInvalid(res.error || null);
                })
                .catch(function() { /* no server answer: the server still says so at Generate */ });
        }, 300);
    };

    // read everything the editor mirrors; cheap, called on watched changes and after UI updates
    proto.sync = function() {
        var self = this, ta = this.textarea();
        if (ta) {
            page.watchValue(ta, function() {
                self.readSpec();
            });
            this.readSpec();
        }
        var w = this.field("width", "input[type=number]"), hgt = this.field("height", "input[type=number]");
        [w, hgt].forEach(function(el) {
            page.watchValue(el, function() {
                self.readSize();
            });
        });
        this.readSize();
        var prompt = this.field("prompt", "textarea");
        page.watchValue(prompt, function(v) {
            if (v !== self._prompt) {
                self._prompt = v;
                self.panel.promptChanged();
            }
        });
        var seed = this.field("seed", "input");
        page.watchValue(seed, function() {
            self.readSeed();
        });
        this.readSeed();
        var gi = page.byId("generation_info_" + this.tab), info = gi && gi.querySelector("textarea");
        page.watchValue(info, function() {
            self.readNote();
        });
        this.readNote();
        if (this.bgMode === "last") this.followGallery(false);
    };

    proto.readSpec = function() {
        var ta = this.textarea();
        if (!ta || ta.value === this.lastText) return;
        this.lastText = ta.value;
        var err = this.editor.load(ta.value);
        this.panel.setError(err);
        this.validateSoon(ta.value);
        this.panel.refresh();
        this.summarize();
    };

    proto.readSize = function() {
        var w = this.field("width", "input[type=number]"), hgt = this.field("height", "input[type=number]");
        if (w && hgt) this.editor.setSize(w.value, hgt.value);
    };

    proto.readSeed = function() {
        var seed = this.field("seed", "input");
        this.panel.setSeedWarning(!!seed && String(seed.value).trim() === "-1");
    };

    var mounts = [];

    function mountAll() {
        Array.prototype.forEach.call(page.app().querySelectorAll(".initedit-root"), function(root) {
            if (root.__initedit) return;
            try {
                root.__initedit = new Mount(root);
            } catch (e) { // e.g. no facts from the server: say so where the editor would be, once
                root.__initedit = {sync: function() {}};
                root.textContent = "InitEdit editor: " + e.message;
                console.error(e);
                return;
            }
            mounts.push(root.__initedit);
        });
    }

    ns.mounts = mounts;
    ns.mountAll = mountAll;

    if (typeof onUiLoaded === "function") {
        onUiLoaded(mountAll);
    }
    if (typeof onAfterUiUpdate === "function") {
        onAfterUiUpdate(function() {
            mountAll();
            mounts.forEach(function(m) {
                m.sync();
            });
        });
    }
})(window.InitEdit = window.InitEdit || {});
