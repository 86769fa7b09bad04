//! POT JSON configs (comments, paths, `model_type: None`) and command-line overrides.

use super::*;

/// Removes `//` and `/* */` comments and trailing commas outside strings: POT reads its configs
/// with jstyleson, which allows both, and its own examples have them.
pub(crate) fn strip_json_comments(text: &str) -> String {
    strip_trailing_commas(&strip_comments(text))
}

/// Drops each `,` (outside strings) whose next non-blank character closes an object or array.
fn strip_trailing_commas(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut in_str = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_str {
            if c == '\\' && i + 1 < chars.len() {
                out.push(c);
                i += 1;
                out.push(chars[i]);
                i += 1;
                continue;
            }
            in_str = c != '"';
        } else if c == '"' {
            in_str = true;
        } else if c == ',' {
            let next = chars[i + 1..].iter().find(|n| !n.is_whitespace());
            if matches!(next, Some('}' | ']')) {
                i += 1;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_str = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    if n == '\n' {
                        out.push('\n');
                    }
                    prev = n;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// What a POT config says besides the algorithm: paths and names.
#[derive(Default, Debug)]
pub(crate) struct PotPaths {
    pub(crate) model: Option<PathBuf>,
    pub(crate) weights: Option<PathBuf>,
    pub(crate) name: Option<String>,
    pub(crate) data: Option<PathBuf>,
    pub(crate) eval_data: Option<PathBuf>,
    pub(crate) labels: Option<PathBuf>,
    pub(crate) metric_output: Option<usize>,
    /// POT's `engine.type: data_free`: synthetic images instead of data.
    pub(crate) data_free: Option<DataFree>,
    /// The accuracy-checker engine the config names (its YAML, or "inline"), unsupported here.
    pub(crate) accuracy_checker: Option<String>,
    /// Config keys read but not applied.
    pub(crate) warnings: Vec<String>,
}

impl PotPaths {
    /// The error for a run without data (or labels) whose config relies on an accuracy-checker
    /// engine: says it is unsupported and what to give instead.
    pub(crate) fn engine_hint(&self, algorithm: Algorithm) -> Option<String> {
        let ac = self.accuracy_checker.as_ref()?;
        let give = match algorithm {
            Algorithm::Default => "--data DIR",
            Algorithm::AccuracyAware => "--data DIR and --labels labels.npy (--eval-data DIR for another set)",
        };
        Some(format!(
            "the config's accuracy-checker engine ({ac}) is not supported; give {give}, or set \
             \"engine\": {{\"type\": \"simplified\", \"data_source\": \"DIR\"}} in the config"
        ))
    }
}

/// POT's data-free engine settings.
#[derive(Default, Debug, Clone)]
pub(crate) struct DataFree {
    /// Make new images even when `data_source` already holds some (POT's `generate_data`).
    pub(crate) generate: bool,
    pub(crate) layout: Option<String>,
}

/// POT's configs spell booleans as strings ("True"); JSON booleans are taken too.
fn truthy(v: Option<&serde_json::Value>) -> bool {
    match v {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "yes"),
        Some(serde_json::Value::Number(n)) => n.as_f64().is_some_and(|x| x != 0.0),
        _ => false,
    }
}

/// POT's templates write `"model_type": "None"` for "not a transformer"; that means the key is absent.
pub(crate) fn drop_none_model_type(v: &mut serde_json::Value) {
    fn strip(obj: Option<&mut serde_json::Value>) {
        if let Some(serde_json::Value::Object(m)) = obj {
            if m.get("model_type")
                .is_some_and(|t| t.is_null() || t.as_str().is_some_and(|s| s.eq_ignore_ascii_case("none")))
            {
                m.remove("model_type");
            }
        }
    }
    let Some(comp) = v.get_mut("compression") else {
        return;
    };
    strip(Some(comp));
    if let Some(algos) = comp.get_mut("algorithms").and_then(|a| a.as_array_mut()) {
        for a in algos {
            strip(a.get_mut("params"));
        }
    }
}

/// A path from the config: as given when it exists from the working directory, else relative to
/// the config's folder.
pub(crate) fn config_path(base: &Path, s: &str) -> PathBuf {
    let p = PathBuf::from(s);
    if p.is_absolute() || p.exists() {
        return p;
    }
    let rel = base.join(&p);
    if rel.exists() {
        rel
    } else {
        p
    }
}

pub(crate) fn read_config(path: &Path) -> CliResult<(QuantConfig, PotPaths)> {
    let text = std::fs::read_to_string(path).map_err(|e| ovpot::Error::io(path, e))?;
    let text = strip_json_comments(&text);
    let shown = path.display().to_string();
    let mut v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| CliError::new(format!("config {shown}: {e}")))?;
    drop_none_model_type(&mut v);
    if let Some(cascade) = v.get("model").and_then(|m| m.get("cascade")).and_then(|c| c.as_array()) {
        let names: Vec<&str> = cascade.iter().filter_map(|m| m.get("name").and_then(|n| n.as_str())).collect();
        return Err(CliError::new(format!(
            "config {shown}: 'model.cascade' ({}) is not supported: POT quantized a cascade with one engine that \
             ran the models together; ovpot quantizes one model per run: give each model its own run \
             (-m <model>.xml with its own calibration data)",
            names.join(", ")
        )));
    }
    let (cfg, mut warnings) = QuantConfig::from_json_with_warnings(&v.to_string())
        .map_err(|e| CliError::new(format!("config {shown}: {e}")))?;
    for k in v.as_object().map(|o| o.keys().collect::<Vec<_>>()).unwrap_or_default() {
        match k.as_str() {
            "model" | "engine" | "compression" => {}
            "optimizer" => warnings.push(
                "'optimizer' is not run: ovpot has no TPE search (accuracy-aware tune_hyperparams searches range \
                 estimators)"
                    .into(),
            ),
            other => warnings.push(format!("'{other}' is not a known POT key; ignored")),
        }
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let s = |sec: &str, key: &str| v.get(sec).and_then(|x| x.get(key)).and_then(|x| x.as_str()).map(str::to_string);
    let p = |sec: &str, key: &str| s(sec, key).map(|x| config_path(base, &x));
    let mut paths = PotPaths {
        model: p("model", "model"),
        weights: p("model", "weights"),
        name: s("model", "model_name"),
        data: p("engine", "data_source"),
        eval_data: p("engine", "eval_data_source"),
        labels: p("engine", "labels"),
        metric_output: v
            .get("engine")
            .and_then(|e| e.get("metric_output"))
            .and_then(|x| x.as_u64())
            .map(|x| x as usize),
        data_free: None,
        accuracy_checker: None,
        warnings,
    };
    let engine_type = s("engine", "type");
    if let Some(t) = &engine_type {
        if !matches!(t.as_str(), "simplified" | "accuracy_checker" | "data_free") {
            return fail(format!(
                "config {shown}: engine.type '{t}' is not supported (use 'simplified' or 'data_free')"
            ));
        }
    }
    if engine_type.as_deref() == Some("data_free") {
        if let Some(t) = s("engine", "data_type").filter(|t| t != "image") {
            return fail(format!("config {shown}: engine.data_type '{t}': data-free mode makes images only"));
        }
        if let Some(shape) = s("engine", "shape") {
            paths.warnings.push(format!(
                "engine.shape '{shape}' is not applied: synthetic images take the model's own input shape \
                 (reshape a dynamic model before quantizing it)"
            ));
        }
        paths.data_free = Some(DataFree {
            generate: truthy(v.get("engine").and_then(|e| e.get("generate_data"))),
            layout: s("engine", "layout"),
        });
        return Ok((cfg, paths));
    }
    // POT's default engine is the accuracy checker: a YAML (`config`) or inline launchers.
    let has = |k: &str| v.get("engine").and_then(|e| e.get(k)).is_some();
    if engine_type.as_deref() != Some("simplified") {
        paths.accuracy_checker = match s("engine", "config") {
            Some(c) => Some(format!("'{c}'")),
            None if has("launchers") || has("datasets") || engine_type.is_some() => Some("inline".into()),
            None => None,
        };
    }
    Ok((cfg, paths))
}

/// A config value as its JSON spelling (`null` shown as "default").
pub(crate) fn json_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Null) => "default".to_string(),
        Ok(other) => other.to_string(),
        Err(_) => "?".to_string(),
    }
}

/// Parses a config enum from its JSON spelling; a usage error naming the option and the valid
/// values (`valid`, as the message shows them) on failure.
pub(crate) fn enum_value<T: serde::de::DeserializeOwned>(s: &str, option: &str, valid: &str) -> CliResult<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| CliError::usage(format!("{option} '{s}' is not a known value; expected {valid}")))
}

pub(crate) const PRESETS: &str = "performance, mixed or accuracy";
pub(crate) const TARGET_DEVICES: &str = "ANY, CPU, CPU_SPR, GPU, NPU or GNA";
pub(crate) const MODEL_TYPES: &str = "transformer or general";
pub(crate) const TARGET_ISAS: &str = "auto, avx2 or vnni";
pub(crate) const SATURATION_FIXES: &str = "auto, per_layer, first_layer, all or no";
pub(crate) const BACKENDS: &str = "builtin or openvino";

pub(crate) fn apply_plan_args(cfg: &mut QuantConfig, a: &PlanArgs) -> CliResult<()> {
    if let Some(p) = &a.preset {
        cfg.preset = enum_value(p, "--preset", PRESETS)?;
    }
    if let Some(t) = &a.target_device {
        cfg.target_device = enum_value(t, "--target-device", TARGET_DEVICES)?;
    }
    if let Some(t) = &a.model_type {
        cfg.model_type = Some(enum_value(t, "--model-type", MODEL_TYPES)?);
    }
    if let Some(t) = &a.target_isa {
        cfg.target_isa = enum_value(t, "--target-isa", TARGET_ISAS)?;
    }
    if let Some(t) = &a.saturation_fix {
        cfg.saturation_fix = enum_value(t, "--saturation-fix", SATURATION_FIXES)?;
    }
    add_ignored_items(&mut cfg.ignored, &a.ignored_scope);
    Ok(())
}

/// `--ignored-scope` items: a name, `re:<regex>` over names, or `type:<OpType>`.
pub(crate) fn add_ignored_items(scope: &mut IgnoredScope, items: &[String]) {
    for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if let Some(re) = item.strip_prefix("re:") {
            scope.patterns.push(re.to_string());
        } else if let Some(t) = item.strip_prefix("type:") {
            scope.types.push(IgnoredOperation { op_type: t.to_string(), ..Default::default() });
        } else {
            scope.names.push(item.to_string());
        }
    }
}

pub(crate) fn apply_overrides(cfg: &mut QuantConfig, a: &QuantizeArgs) -> CliResult<()> {
    if let Some(m) = a.method {
        cfg.algorithm = match m {
            Method::Default => Algorithm::Default,
            Method::AccuracyAware => Algorithm::AccuracyAware,
        };
    }
    apply_plan_args(cfg, &a.plan)?;
    if let Some(n) = a.subset_size {
        cfg.stat_subset_size = n;
    }
    if let Some(d) = a.max_drop {
        cfg.accuracy_aware.maximal_drop = d;
    }
    if a.annotation_free {
        cfg.accuracy_aware.annotation_free = true;
        // Annotation-free is a form of accuracy control.
        if a.method.is_none() {
            cfg.algorithm = Algorithm::AccuracyAware;
        }
    }
    if let Some(t) = a.annotation_conf_threshold {
        cfg.accuracy_aware.annotation_conf_threshold = t;
    }
    if a.keep_uncompressed_weights {
        cfg.compress_weights = false;
    }
    if let Some(b) = &a.backend {
        cfg.backend = enum_value(b, "--backend", BACKENDS)?;
    }
    if let Some(l) = &a.openvino_lib {
        cfg.openvino.library = Some(l.clone());
    }
    cfg.validate()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_stripped_outside_strings() {
        let t = "{ /* a */ \"k\": \"x//y\", // tail\n \"j\": 1 /* b\n c */ }";
        let v: serde_json::Value = serde_json::from_str(&strip_json_comments(t)).unwrap();
        assert_eq!(v["k"], "x//y");
        assert_eq!(v["j"], 1);
    }

    #[test]
    fn trailing_commas_are_dropped_outside_strings() {
        let t = "{ \"a\": [1, 2, ], \"s\": \",}\\\",]\", \"o\": {\"x\": true, // c\n },\n}";
        let v: serde_json::Value = serde_json::from_str(&strip_json_comments(t)).unwrap();
        assert_eq!(v["a"], serde_json::json!([1, 2]));
        assert_eq!(v["s"], ",}\",]");
        assert_eq!(v["o"]["x"], true);
    }
}
