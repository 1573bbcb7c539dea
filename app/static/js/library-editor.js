/* Process library draft editor.
 *
 * BPMN files: the bpmn-js Modeler (node_modules, no CDN) with a small properties panel of
 * our own for exactly what Gridcase processes use — name, lane (= role), timer expression,
 * condition, form file, instructions, DMN decision id, script / postScript — written through
 * the modeler's modeling API, so undo/redo works. DMN files: the dmn-js Modeler. Form and
 * scenario JSON: a text area checked as JSON before saving.
 *
 * Save posts the file to the draft; the answer lists validation issues, shown beside the
 * diagram with the element marked (click an issue to select the element). "Run scenarios"
 * saves first, then runs the draft's scenario files on the server.
 * window.gridcaseEditor exposes the modeler for browser tests.
 */
(function () {
  "use strict";

  var SPIFF = {
    name: "SpiffWorkflow",
    prefix: "spiffworkflow",
    uri: "http://spiffworkflow.org/bpmn/schema/1.0/core",
    xml: { tagAlias: "lowerCase" },
    associations: [],
    types: [
      { name: "Properties", superClass: ["Element"], properties: [{ name: "properties", type: "Property", isMany: true }] },
      { name: "Property", superClass: ["Element"], properties: [
        { name: "name", type: "String", isAttr: true }, { name: "value", type: "String", isAttr: true }] },
      { name: "CalledDecisionId", superClass: ["Element"], properties: [{ name: "value", type: "String", isBody: true }] },
      { name: "InstructionsForEndUser", superClass: ["Element"], properties: [{ name: "value", type: "String", isBody: true }] },
      { name: "PreScript", superClass: ["Element"], properties: [{ name: "value", type: "String", isBody: true }] },
      { name: "PostScript", superClass: ["Element"], properties: [{ name: "value", type: "String", isBody: true }] },
      { name: "MessagePayload", superClass: ["Element"], properties: [{ name: "value", type: "String", isBody: true }] },
      { name: "MessageVariable", superClass: ["Element"], properties: [{ name: "value", type: "String", isBody: true }] }
    ]
  };
  var FORM_PROPERTY = "formJsonSchemaFilename";

  var root = document.getElementById("lib-editor");
  if (!root || !window.fetch) { return; }
  var kind = root.getAttribute("data-kind");
  var status = document.getElementById("editor-status");
  var modeler = null;
  var dirty = false;
  var selected = null;

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("muted", !isError);
    status.style.color = isError ? "var(--bad)" : "";
  }
  function msg(key) { return status.getAttribute("data-" + key) || ""; }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": root.getAttribute("data-csrf") },
      body: JSON.stringify(body || {})
    }).then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, status: response.status, data: data }; });
    });
  }

  // -- content of the current file --------------------------------------------------------
  function currentContent() {
    if (kind === "json") {
      var text = document.getElementById("file-text").value;
      try { JSON.parse(text); } catch (e) { return Promise.reject(new Error(msg("invalid-json") + " " + e.message)); }
      return Promise.resolve(text);
    }
    if (modeler) { return modeler.saveXML({ format: true }).then(function (r) { return r.xml; }); }
    return Promise.resolve(null);
  }

  function save() {
    say(msg("saving"));
    return currentContent().then(function (content) {
      if (content === null) { return { ok: true, data: {} }; }
      return post(root.getAttribute("data-save"), { content: content, revision: Number(root.getAttribute("data-revision")) });
    }).then(function (result) {
      if (!result.ok) {
        var error = result.data.error || {};
        var details = [];
        Object.keys(error.fields || {}).forEach(function (k) { details = details.concat(error.fields[k]); });
        throw new Error((error.message || "") + (details.length ? " — " + details.join("; ") : ""));
      }
      if (result.data.revision) { root.setAttribute("data-revision", String(result.data.revision)); }
      dirty = false;
      say(msg("saved"));
      if (result.data.issues) { showIssues(result.data.issues); }
      return result;
    }).catch(function (error) {
      say(msg("failed") + " " + error.message, true);
      throw error;
    });
  }

  // -- validation issues --------------------------------------------------------------------
  var marked = [];
  function showIssues(issues) {
    var list = document.getElementById("issues");
    list.textContent = "";
    if (modeler && kind === "bpmn") {
      var canvas = modeler.get("canvas");
      marked.forEach(function (id) { try { canvas.removeMarker(id, "gc-issue"); } catch (e) { /* gone */ } });
      marked = [];
    }
    if (!issues.length) {
      var ok = document.createElement("li");
      ok.className = "none";
      ok.textContent = list.getAttribute("data-none");
      list.appendChild(ok);
      return;
    }
    issues.forEach(function (issue) {
      var item = document.createElement("li");
      item.textContent = issue.text;
      item.tabIndex = 0;
      item.setAttribute("data-element", issue.element_id || "");
      item.setAttribute("data-file", issue.file || "");
      list.appendChild(item);
    });
    markIssues();
  }

  function markIssues() {
    if (!modeler || kind !== "bpmn") { return; }
    var registry = modeler.get("elementRegistry");
    var canvas = modeler.get("canvas");
    var file = root.getAttribute("data-file");
    Array.prototype.forEach.call(document.querySelectorAll("#issues li[data-element]"), function (item) {
      var id = item.getAttribute("data-element");
      var sameFile = !item.getAttribute("data-file") || item.getAttribute("data-file") === file;
      if (id && sameFile && registry.get(id)) {
        canvas.addMarker(id, "gc-issue");
        marked.push(id);
      }
    });
  }

  document.getElementById("issues").addEventListener("click", function (event) {
    var item = event.target.closest("li[data-element]");
    if (!item || !modeler || kind !== "bpmn") { return; }
    var element = modeler.get("elementRegistry").get(item.getAttribute("data-element"));
    if (element) {
      modeler.get("selection").select(element);
      modeler.get("canvas").scrollToElement(element);
    }
  });

  // -- buttons ----------------------------------------------------------------------------------
  document.getElementById("save-draft").addEventListener("click", function () { save().catch(function () {}); });
  function commandStack() {
    if (!modeler) { return null; }
    if (kind === "dmn") { var active = modeler.getActiveViewer(); return active ? active.get("commandStack") : null; }
    return modeler.get("commandStack");
  }
  ["undo", "redo"].forEach(function (what) {
    var button = document.getElementById(what + "-edit");
    if (button) {
      button.addEventListener("click", function () {
        var stack = commandStack();
        if (stack) { stack[what](); if (selected) { showPanel(selected); } }
      });
    }
  });
  document.getElementById("validate-draft").addEventListener("click", function () {
    save().then(function () { return post(root.getAttribute("data-validate")); })
      .then(function (result) { showIssues(result.data.issues || []); showChanges(result.data.changes); }).catch(function () {});
  });
  document.getElementById("run-scenarios").addEventListener("click", function () {
    save().then(function () {
      say(msg("running"));
      return post(root.getAttribute("data-scenarios"));
    }).then(function (result) {
      showIssues(result.data.issues || []);
      showScenarios(result.data);
      say("");
    }).catch(function () {});
  });
  var deployForm = document.getElementById("deploy-form");
  deployForm.addEventListener("submit", function (event) {
    if (!dirty) { return; }
    event.preventDefault();
    save().then(function () { deployForm.submit(); }).catch(function () {});
  });

  function showChanges(changes) {
    var list = document.getElementById("draft-changes");
    if (!list) { return; }
    var labels = JSON.parse(list.getAttribute("data-labels") || "{}");
    var aspects = JSON.parse(list.getAttribute("data-aspects") || "{}");
    list.textContent = "";
    function note(text) { var li = document.createElement("li"); li.className = "muted"; li.textContent = text; list.appendChild(li); }
    if (changes === null || changes === undefined) { note(list.getAttribute("data-unknown")); return; }
    if (!changes.length) { note(list.getAttribute("data-none")); return; }
    changes.forEach(function (c) {
      var li = document.createElement("li");
      li.setAttribute("data-element", c.element_id);
      li.setAttribute("data-status", c.status);
      var tag = document.createElement("span");
      tag.className = "lib-tag " + c.status;
      tag.textContent = labels[c.status] || c.status;
      li.appendChild(tag);
      var what = (c.aspects || []).map(function (a) { return aspects[a] || a; }).join(", ");
      li.appendChild(document.createTextNode(" " + (c.name || c.element_id) + (what ? " (" + what + ")" : "")));
      list.appendChild(li);
    });
  }

  function showScenarios(data) {
    var list = document.getElementById("scenario-results");
    var summary = document.getElementById("scenario-summary");
    var coverage = document.getElementById("coverage");
    list.textContent = "";
    coverage.textContent = "";
    var results = data.results || [];
    var passed = results.filter(function (r) { return r.passed; }).length;
    summary.textContent = summary.getAttribute("data-template").replace("{passed}", passed).replace("{total}", results.length);
    summary.setAttribute("data-passed", String(passed));
    summary.setAttribute("data-total", String(results.length));
    results.forEach(function (r) {
      var item = document.createElement("li");
      item.className = r.passed ? "pass" : "fail";
      item.textContent = (r.passed ? "✔ " : "✘ ") + r.name + (r.message ? " — " + r.message : "");
      list.appendChild(item);
    });
    (data.coverage || []).forEach(function (c) {
      var p = document.createElement("p");
      p.className = "coverage-line";
      p.textContent = (coverage.getAttribute("data-template") || c.line)
        .replace("{hit}", c.hit).replace("{total}", c.total).replace("{percent}", c.percent);
      coverage.appendChild(p);
      c.missed.forEach(function (m) {
        var miss = document.createElement("div");
        miss.className = "muted";
        miss.textContent = "· " + (coverage.getAttribute("data-missed") || "") + " " + m;
        coverage.appendChild(miss);
      });
    });
  }

  if (kind === "json") {
    document.getElementById("file-text").addEventListener("input", function () { dirty = true; say(msg("unsaved")); });
  }
  window.addEventListener("beforeunload", function (event) {
    if (dirty) { event.preventDefault(); event.returnValue = ""; }
  });

  // -- BPMN: modeler and properties panel -------------------------------------------------------
  function ext(bo, type) {
    var values = (bo.extensionElements && bo.extensionElements.values) || [];
    for (var i = 0; i < values.length; i++) { if (values[i].$type === type) { return values[i]; } }
    return null;
  }

  function formProperty(bo) {
    var props = ext(bo, "spiffworkflow:Properties");
    if (!props) { return null; }
    var list = props.get("properties") || [];
    for (var i = 0; i < list.length; i++) { if (list[i].name === FORM_PROPERTY) { return list[i]; } }
    return null;
  }

  function timerDefinition(bo) {
    var defs = bo.eventDefinitions || [];
    for (var i = 0; i < defs.length; i++) { if (defs[i].$type === "bpmn:TimerEventDefinition") { return defs[i]; } }
    return null;
  }

  function is(bo, type) { return bo && typeof bo.$instanceOf === "function" && bo.$instanceOf(type); }

  function showPanel(element) {
    selected = element;
    var fields = document.getElementById("prop-fields");
    document.getElementById("prop-empty").hidden = !!element;
    fields.hidden = !element;
    if (!element) { return; }
    var bo = element.businessObject;
    document.getElementById("prop-type").textContent = bo.$type.replace("bpmn:", "");
    document.getElementById("prop-id").textContent = bo.id;
    document.getElementById("prop-name").value = bo.name || "";
    var timer = timerDefinition(bo);
    var show = {
      lane: is(bo, "bpmn:Lane"),
      timer: !!timer,
      condition: is(bo, "bpmn:SequenceFlow"),
      form: is(bo, "bpmn:UserTask") || is(bo, "bpmn:ManualTask"),
      decision: is(bo, "bpmn:BusinessRuleTask"),
      script: is(bo, "bpmn:ScriptTask"),
      postscript: is(bo, "bpmn:Task")
    };
    Array.prototype.forEach.call(fields.querySelectorAll("[data-for]"), function (node) {
      node.hidden = !show[node.getAttribute("data-for")];
    });
    if (timer) {
      var which = timer.timeDate ? "timeDate" : timer.timeDuration ? "timeDuration" : timer.timeCycle ? "timeCycle" : "timeDate";
      document.getElementById("prop-timer-kind").value = which;
      document.getElementById("prop-timer").value = timer[which] ? timer[which].body || "" : "";
    }
    document.getElementById("prop-condition").value = bo.conditionExpression ? bo.conditionExpression.body || "" : "";
    var form = formProperty(bo);
    document.getElementById("prop-form").value = form ? form.value || "" : "";
    var instructions = ext(bo, "spiffworkflow:InstructionsForEndUser");
    document.getElementById("prop-instructions").value = instructions ? instructions.value || "" : "";
    var decision = ext(bo, "spiffworkflow:CalledDecisionId");
    document.getElementById("prop-decision").value = decision ? decision.value || "" : "";
    document.getElementById("prop-script").value = bo.script || "";
    var post_ = ext(bo, "spiffworkflow:PostScript");
    document.getElementById("prop-postscript").value = post_ ? post_.value || "" : "";
  }

  function setExtension(element, type, value, build) {
    var modeling = modeler.get("modeling");
    var moddle = modeler.get("moddle");
    var bo = element.businessObject;
    var existing = ext(bo, type);
    if (existing) {
      if (value === "" && !build) {
        var remaining = bo.extensionElements.values.filter(function (v) { return v !== existing; });
        modeling.updateModdleProperties(element, bo.extensionElements, { values: remaining });
      } else if (!build) {
        modeling.updateModdleProperties(element, existing, { value: value });
      }
      return existing;
    }
    if (value === "") { return null; }
    var extensionElements = bo.extensionElements;
    if (!extensionElements) {
      extensionElements = moddle.create("bpmn:ExtensionElements", { values: [] });
      modeling.updateProperties(element, { extensionElements: extensionElements });
    }
    var created = build ? build() : moddle.create(type, { value: value });
    modeling.updateModdleProperties(element, extensionElements, { values: extensionElements.get("values").concat([created]) });
    return created;
  }

  function applyPanel() {
    if (!selected) { return; }
    var element = selected;
    var modeling = modeler.get("modeling");
    var moddle = modeler.get("moddle");
    var bo = element.businessObject;
    var name = document.getElementById("prop-name").value;
    if ((bo.name || "") !== name) { modeling.updateLabel(element, name); }
    var timer = timerDefinition(bo);
    if (timer) {
      var which = document.getElementById("prop-timer-kind").value;
      var text = document.getElementById("prop-timer").value;
      var current = timer.timeDate ? "timeDate" : timer.timeDuration ? "timeDuration" : timer.timeCycle ? "timeCycle" : null;
      var before = current && timer[current] ? timer[current].body || "" : "";
      if (which !== current || before !== text) {
        var update = { timeDate: undefined, timeDuration: undefined, timeCycle: undefined };
        update[which] = moddle.create("bpmn:FormalExpression", { body: text });
        modeling.updateModdleProperties(element, timer, update);
      }
    }
    if (is(bo, "bpmn:SequenceFlow")) {
      var condition = document.getElementById("prop-condition").value;
      var was = bo.conditionExpression ? bo.conditionExpression.body || "" : "";
      if (condition !== was) {
        modeling.updateProperties(element, {
          conditionExpression: condition.trim() ? moddle.create("bpmn:FormalExpression", { body: condition }) : undefined
        });
      }
    }
    if (is(bo, "bpmn:UserTask") || is(bo, "bpmn:ManualTask")) {
      var formName = document.getElementById("prop-form").value.trim();
      var prop = formProperty(bo);
      if (prop && prop.value !== formName) {
        modeling.updateModdleProperties(element, prop, { value: formName });
      } else if (!prop && formName) {
        var props = ext(bo, "spiffworkflow:Properties") || setExtension(element, "spiffworkflow:Properties", "x", function () {
          return moddle.create("spiffworkflow:Properties", { properties: [] });
        });
        var created = moddle.create("spiffworkflow:Property", { name: FORM_PROPERTY, value: formName });
        modeling.updateModdleProperties(element, props, { properties: (props.get("properties") || []).concat([created]) });
      }
      var instructions = document.getElementById("prop-instructions").value;
      var oldInstructions = ext(bo, "spiffworkflow:InstructionsForEndUser");
      if ((oldInstructions ? oldInstructions.value || "" : "") !== instructions) {
        setExtension(element, "spiffworkflow:InstructionsForEndUser", instructions);
      }
    }
    if (is(bo, "bpmn:BusinessRuleTask")) {
      var decision = document.getElementById("prop-decision").value.trim();
      var oldDecision = ext(bo, "spiffworkflow:CalledDecisionId");
      if ((oldDecision ? oldDecision.value || "" : "") !== decision) {
        setExtension(element, "spiffworkflow:CalledDecisionId", decision);
      }
    }
    if (is(bo, "bpmn:ScriptTask")) {
      var script = document.getElementById("prop-script").value;
      if ((bo.script || "") !== script) { modeling.updateProperties(element, { script: script, scriptFormat: bo.scriptFormat || "python" }); }
    }
    if (is(bo, "bpmn:Task")) {
      var postScript = document.getElementById("prop-postscript").value;
      var oldPost = ext(bo, "spiffworkflow:PostScript");
      if ((oldPost ? oldPost.value || "" : "") !== postScript) {
        setExtension(element, "spiffworkflow:PostScript", postScript);
      }
    }
    showPanel(element);
  }

  function failed(error) {
    if (window.console) { window.console.warn(error); }
    var canvas = document.getElementById("modeler-canvas");
    if (canvas) { canvas.textContent = canvas.getAttribute("data-failed") + " " + (error && error.message || ""); }
  }

  // SpiffWorkflow names a multi-instance task's collection by variable name in
  // loopDataInputRef/loopDataOutputRef, which BPMN types as a reference to an element id.
  // bpmn-js drops references it cannot resolve when saving, so put a stand-in with that id
  // back: it serialises as the same text and is not itself written anywhere.
  function keepUnresolvedReferences(warnings) {
    var moddle = modeler.get("moddle");
    (warnings || []).forEach(function (warning) {
      if (!warning || !warning.element || !warning.property || typeof warning.value !== "string") { return; }
      if (!/unresolved reference/.test(warning.message || "")) { return; }
      var descriptor = warning.element.$descriptor && warning.element.$descriptor.propertiesByName[warning.property];
      if (!descriptor || descriptor.isMany) { return; }
      warning.element.set(warning.property, moddle.create("bpmn:ItemAwareElement", { id: warning.value }));
    });
  }

  function startBpmn() {
    if (typeof window.BpmnJS !== "function") { return; }
    modeler = new window.BpmnJS({ container: "#modeler-canvas", keyboard: { bindTo: document }, moddleExtensions: { spiffworkflow: SPIFF } });
    window.gridcaseEditor = { modeler: modeler, save: save, applyPanel: applyPanel };
    fetch(root.getAttribute("data-source"), { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (xml) { return modeler.importXML(xml); })
      .then(function (result) {
        keepUnresolvedReferences(result && result.warnings);
        modeler.get("canvas").zoom("fit-viewport");
        markIssues();
        modeler.on("selection.changed", function (event) { showPanel(event.newSelection.length === 1 ? event.newSelection[0] : null); });
        modeler.on("commandStack.changed", function () { dirty = true; say(msg("unsaved")); });
        modeler.on("element.changed", function (event) { if (selected && event.element === selected) { /* keep panel */ } });
        document.getElementById("prop-apply").addEventListener("click", applyPanel);
        root.setAttribute("data-ready", "true");
      })
      .catch(failed);
  }

  function startDmn() {
    if (typeof window.DmnJS !== "function") { return; }
    modeler = new window.DmnJS({ container: "#modeler-canvas", keyboard: { bindTo: document } });
    window.gridcaseEditor = { modeler: modeler, save: save };
    fetch(root.getAttribute("data-source"), { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (xml) { return modeler.importXML(xml); })
      .then(function () {
        var views = modeler.getViews();
        var table = views.filter(function (v) { return v.type === "decisionTable"; })[0];
        if (table) { return modeler.open(table); }
        return null;
      })
      .then(function () {
        modeler.on("views.changed", function () { /* view switches are not edits */ });
        var active = modeler.getActiveViewer();
        if (active) { active.on("commandStack.changed", function () { dirty = true; say(msg("unsaved")); }); }
        root.setAttribute("data-ready", "true");
      })
      .catch(failed);
  }

  if (kind === "bpmn") { startBpmn(); } else if (kind === "dmn") { startDmn(); } else { root.setAttribute("data-ready", "true"); }
})();
