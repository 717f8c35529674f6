//! The final `RESULT {json}` line: a flat JSON object built by hand (no
//! serde needed for numbers and a few strings).

use std::fmt::Write as _;

enum Val {
    Num(f64),
    Int(u64),
    Str(String),
    Bool(bool),
    Null,
}

#[derive(Default)]
pub struct Report {
    fields: Vec<(&'static str, Val)>,
}

impl Report {
    pub fn num(&mut self, key: &'static str, v: f64) {
        self.fields.push((key, Val::Num(v)));
    }

    pub fn opt_num(&mut self, key: &'static str, v: Option<f64>) {
        self.fields.push((key, v.map_or(Val::Null, Val::Num)));
    }

    pub fn int(&mut self, key: &'static str, v: u64) {
        self.fields.push((key, Val::Int(v)));
    }

    pub fn opt_int(&mut self, key: &'static str, v: Option<u64>) {
        self.fields.push((key, v.map_or(Val::Null, Val::Int)));
    }

    pub fn str(&mut self, key: &'static str, v: &str) {
        self.fields.push((key, Val::Str(v.to_owned())));
    }

    pub fn bool(&mut self, key: &'static str, v: bool) {
        self.fields.push((key, Val::Bool(v)));
    }

    pub fn to_json(&self) -> String {
        let mut s = String::from("{");
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            push_str(&mut s, k);
            s.push(':');
            match v {
                // JSON has no NaN/Infinity.
                Val::Num(x) if x.is_finite() => {
                    let _ = write!(s, "{}", (x * 1000.0).round() / 1000.0);
                }
                Val::Num(_) | Val::Null => s.push_str("null"),
                Val::Int(x) => {
                    let _ = write!(s, "{x}");
                }
                Val::Str(x) => push_str(&mut s, x),
                Val::Bool(x) => {
                    let _ = write!(s, "{x}");
                }
            }
        }
        s.push('}');
        s
    }
}

fn push_str(s: &mut String, v: &str) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

/// `a / b`, or None when b is missing or zero.
pub fn per(a: f64, b: Option<f64>) -> Option<f64> {
    match b {
        Some(b) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// Formats an optional number for the human-readable lines.
pub fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.decimals$}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line() {
        let mut r = Report::default();
        r.str("mode", "echo \"x\"");
        r.int("n", 3);
        r.num("rate", 1.23456);
        r.opt_num("cpu", None);
        r.num("nan", f64::NAN);
        r.bool("ok", true);
        assert_eq!(
            r.to_json(),
            r#"{"mode":"echo \"x\"","n":3,"rate":1.235,"cpu":null,"nan":null,"ok":true}"#
        );
    }
}
