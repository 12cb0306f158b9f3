// InitEdit: glue between the editor and the WebUI page. Mounts an editor in every `.initedit-root` that
// lib_initedit/webui/ui.py renders, mirrors the spec textbox both ways and follows the txt2img fields
// (width, height, prompt, seed, gallery). Uses only the DOM and the WebUI's documented JS callbacks.
(function(ns) {
    "use strict";

    function app() {
        return typeof gradioApp === "function" ? gradioApp() : document;
    }

    function byId(id) {
        return document.getElementById(id) || app().querySelector("#" + CSS.escape(id));
    }

    // what the WebUI's updateInput does: tell gradio (3 and 4) that a field changed
    function sendInput(el) {
        if (typeof updateInput === "function") return updateInput(el);
        el.dispatchEvent(new Event("input", {bubbles: true}));
    }

    // call `cb` (batched) whenever el.value changes: typing, or a framework assigning .value (paste, API-free updates)
    function watchValue(el, cb) {
        if (!el || el.__initeditWatch) return;
        var pending = false;
        var fire = function() {
            if (pending) return;
            pending = true;
            setTimeout(function() {
                pending = false;
                cb(el.value);
            }, 0);
        };
        var proto = Object.getPrototypeOf(el), desc = null;
        while (proto && !(desc = Object.getOwnPropertyDescriptor(proto, "value"))) proto = Object.getPrototypeOf(proto);
        if (desc && desc.set && desc.configurable !== false) {
            Object.defineProperty(el, "value", {
                configurable: true,
                enumerable: desc.enumerable,
                get: function() {
                    return desc.get.call(this);
                },
                set: function(v) {
                    desc.set.call(this, v);
                    fire();
                },
            });
        }
        el.addEventListener("input", fire);
        el.addEventListener("change", fire);
        el.__initeditWatch = fire;
    }

    function loadImage(src, done) {
        var img = new Image();
        img.onload = function() {
            done(img);
        };
        img.onerror = function() {
            done(null);
        };
        img.src = src;
    }

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
                var acc = byId(self.accordionId) || root;
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

    Mount.prototype.field = function(suffix, sel) {
        var el = byId(this.tab + "_" + suffix);
        return el ? el.querySelector(sel) : null;
    };

    Mount.prototype.textarea = function() {
        var el = byId(this.specId);
        return el ? el.querySelector("textarea, input") : null;
    };

    Mount.prototype.promptText = function() {
        var ta = this.field("prompt", "textarea");
        return ta ? ta.value : "";
    };

    // "2 regions · 1 box" in the accordion's header, so a closed accordion still says what it holds
    Mount.prototype.summarize = function() {
        var acc = byId(this.accordionId), el = acc && acc.querySelector(".initedit-summary");
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
    Mount.prototype.write = function(text) {
        var ta = this.textarea();
        this.summarize();
        this.lastText = text;
        this.validateSoon(text);
        if (!ta || ta.value === text) return;
        ta.value = text;
        sendInput(ta);
    };

    // ask the server's parser (POST data-validate-url) about the spec, debounced; the answer is shown in the
    // panel before Generate. No URL (a page without the route), or no answer: nothing is shown.
    Mount.prototype.validateSoon = function(text) {
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
    Mount.prototype.sync = function() {
        var self = this, ta = this.textarea();
        if (ta) {
            watchValue(ta, function() {
                self.readSpec();
            });
            this.readSpec();
        }
        var w = this.field("width", "input[type=number]"), hgt = this.field("height", "input[type=number]");
        [w, hgt].forEach(function(el) {
            watchValue(el, function() {
                self.readSize();
            });
        });
        this.readSize();
        var prompt = this.field("prompt", "textarea");
        watchValue(prompt, function(v) {
            if (v !== self._prompt) {
                self._prompt = v;
                self.panel.promptChanged();
            }
        });
        var seed = this.field("seed", "input");
        watchValue(seed, function() {
            self.readSeed();
        });
        this.readSeed();
        var gi = byId("generation_info_" + this.tab), info = gi && gi.querySelector("textarea");
        watchValue(info, function() {
            self.readNote();
        });
        this.readNote();
        if (this.bgMode === "last") this.followGallery(false);
    };

    // what the server wrote about the image the gallery shows: "InitEdit error" (not applied) or "InitEdit note"
    Mount.prototype.readNote = function() {
        var info = this.generationInfo(), note = null, isError = false;
        if (info && Array.isArray(info.infotexts) && info.infotexts.length) {
            var text = info.infotexts[Math.min(this.galleryIndex(), info.infotexts.length - 1)];
            var err = this.S.infotextValue(text, this.S.keys.error), v = this.S.infotextValue(text, this.S.keys.note);
            if (err !== null) {
                note = typeof err === "string" ? err : JSON.stringify(err);
                isError = true;
            } else if (v !== null) {
                note = typeof v === "string" ? v : JSON.stringify(v);
            }
        }
        this.panel.setNote(note, isError);
    };

    Mount.prototype.readSpec = function() {
        var ta = this.textarea();
        if (!ta || ta.value === this.lastText) return;
        this.lastText = ta.value;
        var err = this.editor.load(ta.value);
        this.panel.setError(err);
        this.validateSoon(ta.value);
        this.panel.refresh();
        this.summarize();
    };

    Mount.prototype.readSize = function() {
        var w = this.field("width", "input[type=number]"), hgt = this.field("height", "input[type=number]");
        if (w && hgt) this.editor.setSize(w.value, hgt.value);
    };

    Mount.prototype.readSeed = function() {
        var seed = this.field("seed", "input");
        this.panel.setSeedWarning(!!seed && String(seed.value).trim() === "-1");
    };

    // the last generation's info JSON ({seed, infotexts, ...}) or null
    Mount.prototype.generationInfo = function() {
        var el = byId("generation_info_" + this.tab);
        var ta = el && (el.querySelector("textarea") || (el.tagName === "TEXTAREA" ? el : null));
        if (!ta || !ta.value) return null;
        try {
            return JSON.parse(ta.value);
        } catch (e) {
            return null;
        }
    };

    Mount.prototype.galleryIndex = function() {
        try {
            var i = typeof selected_gallery_index === "function" ? selected_gallery_index() : -1;
            return i >= 0 ? i : 0;
        } catch (e) {
            return 0;
        }
    };

    // the resolved seed of reroll region i in the last generation's infotext
    Mount.prototype.lastResolvedSeed = function(i) {
        var info = this.generationInfo();
        if (!info || !Array.isArray(info.infotexts) || !info.infotexts.length) return null;
        var idx = Math.min(this.galleryIndex(), info.infotexts.length - 1);
        var texts = [info.infotexts[idx]].concat(info.infotexts);
        for (var k = 0; k < texts.length; k++) {
            var raw = this.S.infotextValue(texts[k], this.S.keys.infotext);
            if (raw === null) continue;
            var res = this.S.parse(typeof raw === "string" ? raw : JSON.stringify(raw));
            var r = res.spec.reroll[i];
            if (!res.error && r && r.seed >= 0) return r.seed;
        }
        return null;
    };

    // main seed is -1: reuse the last one (the WebUI's ♻️) or pick a fixed one
    Mount.prototype.fixMainSeed = function() {
        var info = this.generationInfo(), reuse = byId(this.tab + "_reuse_seed");
        if (info && info.seed !== undefined && info.seed !== -1 && reuse) {
            reuse.click();
        } else {
            var seed = this.field("seed", "input");
            if (!seed) return;
            seed.value = Math.floor(Math.random() * this.S.RANDOM_SEED_LIMIT);
            sendInput(seed);
        }
        var self = this;
        setTimeout(function() {
            self.readSeed();
        }, 300);
    };

    // the image the gallery shows (the selected one, else the first)
    Mount.prototype.galleryImage = function() {
        var g = byId(this.tab + "_gallery");
        if (!g) return null;
        var img = g.querySelector(".preview img, img.preview, [data-testid='detailed-image'] img") || g.querySelector("img");
        return img && img.src ? img : null;
    };

    Mount.prototype.followGallery = function(force) {
        var img = this.galleryImage(), self = this;
        if (!img) {
            if (force) this.panel.setError(null);
            return;
        }
        if (!force && img.src === this.bgSrc) return;
        this.bgSrc = img.src;
        loadImage(img.src, function(loaded) {
            if (loaded && self.bgMode === "last") self.editor.setBackground(loaded);
        });
    };

    Mount.prototype.useFile = function(file) {
        var self = this, reader = new FileReader();
        reader.onload = function() {
            loadImage(reader.result, function(img) {
                if (!img) return;
                self.bgMode = "file";
                self.editor.setBackground(img);
            });
        };
        reader.readAsDataURL(file);
    };

    Mount.prototype._dropTarget = function(el) {
        var self = this;
        el.addEventListener("dragover", function(e) {
            if (e.dataTransfer && Array.prototype.indexOf.call(e.dataTransfer.types, "Files") >= 0) {
                e.preventDefault();
                e.stopPropagation();
                el.classList.add("initedit-drop");
            }
        });
        el.addEventListener("dragleave", function() {
            el.classList.remove("initedit-drop");
        });
        el.addEventListener("drop", function(e) {
            el.classList.remove("initedit-drop");
            var f = e.dataTransfer && e.dataTransfer.files[0];
            if (!f || !/^image\//.test(f.type)) return;
            e.preventDefault();
            e.stopPropagation(); // keep the WebUI's page-wide drop (paste infotext from PNG) out of it
            self.useFile(f);
        });
    };

    var mounts = [];

    function mountAll() {
        Array.prototype.forEach.call(app().querySelectorAll(".initedit-root"), function(root) {
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
    ns.watchValue = watchValue;

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
