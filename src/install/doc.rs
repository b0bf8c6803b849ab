//! Format-preserving edits of engine config files, and the record that
//! lets `uninstall` undo exactly what `install` did.
//!
//! JSON (docker's daemon.json) goes through `jsonc-parser`'s CST and TOML
//! (containerd, CRI-O, podman, migward's own config) through `toml_edit`:
//! both keep every other key, comment and blank line as written. An edit
//! records what it touched (a [`FileRecord`]): the keys it set with the
//! value each had before, the tables it created, and whether it created the
//! file. Undoing is the same for both formats ([`undo`]).

use jsonc_parser::cst::{CstInputValue, CstObject, CstObjectProp, CstRootNode};
use jsonc_parser::ParseOptions;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use toml_edit::{DocumentMut, Item, Table, Value};

/// A key path from the document root, e.g. `["runtimes", "migward"]`.
pub type KeyPath = Vec<String>;

pub fn key(parts: &[&str]) -> KeyPath {
    parts.iter().map(|p| p.to_string()).collect()
}

/// What install did to one file, so that uninstall can undo it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The file as the host sees it (not under `--root`).
    pub path: PathBuf,
    /// The whole file is migward's (a hook file, a drop-in): uninstall removes it.
    #[serde(default)]
    pub owned: bool,
    /// The file did not exist; install created it with this text, and
    /// uninstall removes it when undoing leaves exactly this text.
    #[serde(default)]
    pub created_with: Option<String>,
    /// The file existed; this was its text before the first install edited
    /// it. Uninstall writes it back byte for byte when the file is still
    /// what the last install wrote (`written`) and undoing leaves the same
    /// settings; else it keeps the undone file (with whatever was changed
    /// since), whose layout may differ in places.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
    /// [`text_hash`] of the text the last install left in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<String>,
    /// Tables or objects install created, outermost first: removed when
    /// undoing leaves them empty.
    #[serde(default)]
    pub created: Vec<KeyPath>,
    /// Keys install set, in order, each with its value before (absent = none).
    #[serde(default)]
    pub set: Vec<SetKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetKey {
    pub key: KeyPath,
    /// The value before, as written in the file (`"runc"`); `None` when the key was absent.
    pub prior: Option<String>,
}

/// A stable 64-bit hash of a file's text (FNV-1a), in hex: enough to tell
/// whether a file is still what install wrote, without a copy of it.
pub fn text_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl FileRecord {
    /// An edit of a file that held `before` and now holds `after`: `before`
    /// is kept as the file's original (a file migward owns or created has
    /// none).
    pub fn editing(mut self, before: Option<&str>, after: &str) -> FileRecord {
        if !self.owned && self.created_with.is_none() {
            self.original = before.map(str::to_string);
            self.written = Some(text_hash(after));
        }
        self
    }

    /// Merges a re-install into the record of an earlier install: what the
    /// earlier install saw before it first changed anything wins (its
    /// priors and its original); what was written last is this install's.
    pub fn merged_into(self, old: Option<&FileRecord>) -> FileRecord {
        let Some(old) = old else { return self };
        let mut out = old.clone();
        out.owned |= self.owned;
        if out.original.is_some() && self.written.is_some() {
            out.written = self.written.clone();
        }
        for c in self.created {
            if !out.created.contains(&c) {
                out.created.push(c);
            }
        }
        for s in self.set {
            if !out.set.iter().any(|o| o.key == s.key) {
                out.set.push(s);
            }
        }
        out
    }

    pub fn note_set(&mut self, key: KeyPath, prior: Option<String>) {
        self.set.push(SetKey { key, prior });
    }
}

/// The operations undo needs, for either format.
pub trait Doc {
    fn remove(&mut self, key: &[String]);
    fn restore(&mut self, key: &[String], raw: &str) -> Result<(), String>;
    /// Whether the table or object at `key` exists and has no entries.
    fn is_empty_at(&self, key: &[String]) -> bool;
    fn render(&self) -> String;
}

/// Undoes `rec` on `doc`: keys set are removed or given their prior value
/// back (last first), then the tables install created are removed if empty.
pub fn undo(doc: &mut impl Doc, rec: &FileRecord) -> Result<(), String> {
    for s in rec.set.iter().rev() {
        match &s.prior {
            None => doc.remove(&s.key),
            Some(raw) => doc.restore(&s.key, raw)?,
        }
    }
    for c in rec.created.iter().rev() {
        if doc.is_empty_at(c) {
            doc.remove(c);
        }
    }
    Ok(())
}

/// Any JSON value in which no object names a key twice. dockerd (Go's
/// encoding/json) reads only the last of a repeated key, and an edit in
/// place changes the first: migward registered in the first `runtimes`
/// would be ignored. Such a file is refused, naming the key.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<UniqueKeys, A::Error> {
        while a.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = a.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!(
                    "the key {key:?} appears twice in one object (dockerd reads only the last): merge the two"
                )));
            }
            a.next_value::<UniqueKeys>()?;
        }
        Ok(UniqueKeys)
    }
}

/// A JSON document edited in place (docker's daemon.json).
pub struct JsonDoc {
    root: CstRootNode,
}

impl JsonDoc {
    /// Parses strict JSON (dockerd accepts no comments) with no key twice in
    /// one object; an empty file is `{}`.
    pub fn parse(text: &str) -> Result<JsonDoc, String> {
        let text = if text.trim().is_empty() { "{}\n" } else { text };
        serde_json::from_str::<UniqueKeys>(text).map_err(|e| e.to_string())?;
        let root = CstRootNode::parse(text, &ParseOptions::default()).map_err(|e| e.to_string())?;
        if root.object_value().is_none() {
            return Err("the top level is not an object".into());
        }
        Ok(JsonDoc { root })
    }

    fn object_at(&self, key: &[String]) -> Option<CstObject> {
        let mut obj = self.root.object_value()?;
        for k in key {
            obj = obj.object_value(k)?;
        }
        Some(obj)
    }

    fn prop_at(&self, key: &[String]) -> Option<CstObjectProp> {
        let (last, parent) = key.split_last()?;
        self.object_at(parent)?.get(last)
    }

    /// The value at `key`, as plain JSON.
    pub fn get(&self, key: &[String]) -> Option<serde_json::Value> {
        self.prop_at(key)?.value()?.to_serde_value()
    }

    /// Makes sure an object exists at `key`; true when it was created.
    pub fn ensure_object(&mut self, key: &[String]) -> Result<bool, String> {
        if let Some(prop) = self.prop_at(key) {
            return match prop.object_value() {
                Some(_) => Ok(false),
                None => Err(format!("`{}` is not an object", key.join("."))),
            };
        }
        self.set(key, serde_json::json!({}))?;
        Ok(true)
    }

    /// Sets `key` (its parent object must exist), keeping its place.
    pub fn set(&mut self, key: &[String], value: serde_json::Value) -> Result<(), String> {
        let (last, parent) = key.split_last().ok_or("empty key")?;
        let obj = self
            .object_at(parent)
            .ok_or_else(|| format!("`{}` is not an object", parent.join(".")))?;
        match obj.get(last) {
            Some(prop) => prop.set_value(input(&value)),
            None => {
                obj.append(last, input(&value));
            }
        }
        Ok(())
    }
}

fn input(v: &serde_json::Value) -> CstInputValue {
    use serde_json::Value as J;
    match v {
        J::Null => CstInputValue::Null,
        J::Bool(b) => CstInputValue::Bool(*b),
        J::Number(n) => CstInputValue::Number(n.to_string()),
        J::String(s) => CstInputValue::String(s.clone()),
        J::Array(a) => CstInputValue::Array(a.iter().map(input).collect()),
        J::Object(o) => {
            CstInputValue::Object(o.iter().map(|(k, v)| (k.clone(), input(v))).collect())
        }
    }
}

impl Doc for JsonDoc {
    fn remove(&mut self, key: &[String]) {
        if let Some(prop) = self.prop_at(key) {
            prop.remove();
        }
    }

    fn restore(&mut self, key: &[String], raw: &str) -> Result<(), String> {
        let v: serde_json::Value = serde_json::from_str(raw).map_err(|e| e.to_string())?;
        self.set(key, v)
    }

    fn is_empty_at(&self, key: &[String]) -> bool {
        self.object_at(key)
            .is_some_and(|o| o.properties().is_empty())
    }

    fn render(&self) -> String {
        self.root.to_string()
    }
}

/// A TOML document edited in place.
pub struct TomlDoc {
    pub doc: DocumentMut,
}

impl TomlDoc {
    pub fn parse(text: &str) -> Result<TomlDoc, String> {
        let doc = text
            .parse::<DocumentMut>()
            .map_err(|e| one_line(&e.to_string()))?;
        Ok(TomlDoc { doc })
    }

    pub fn table_at(&self, key: &[String]) -> Option<&Table> {
        let mut t = self.doc.as_table();
        for k in key {
            t = t.get(k)?.as_table()?;
        }
        Some(t)
    }

    pub fn table_at_mut(&mut self, key: &[String]) -> Option<&mut Table> {
        let mut t = self.doc.as_table_mut();
        for k in key {
            t = t.get_mut(k)?.as_table_mut()?;
        }
        Some(t)
    }

    pub fn get(&self, key: &[String]) -> Option<&Item> {
        let (last, parent) = key.split_last()?;
        self.table_at(parent)?.get(last)
    }

    /// Makes sure every table along `key` exists (new ones implicit, so no
    /// empty headers are written); returns the ones it created, outermost first.
    pub fn ensure_tables(&mut self, key: &[String]) -> Result<Vec<KeyPath>, String> {
        let mut created = Vec::new();
        let mut t = self.doc.as_table_mut();
        for (i, k) in key.iter().enumerate() {
            if !t.contains_key(k) {
                let mut new = Table::new();
                new.set_implicit(true);
                t.insert(k, Item::Table(new));
                created.push(key[..=i].to_vec());
            }
            t = t
                .get_mut(k)
                .and_then(Item::as_table_mut)
                .ok_or_else(|| format!("`{}` is not a table", key[..=i].join(".")))?;
        }
        Ok(created)
    }

    /// The value at `key` as written (`"runc"`), without its surrounding space.
    pub fn raw(&self, key: &[String]) -> Option<String> {
        let mut v = self.get(key)?.as_value()?.clone();
        v.decor_mut().clear();
        Some(v.to_string())
    }

    /// Sets the string `key` to `value` and notes in `rec` the value it had
    /// before. Where that already was `value` and `registered` (an earlier
    /// install's, its record lost) it is not noted, so uninstall removes it
    /// with the rest of that install; a `value` the admin wrote with
    /// migward not registered is noted and comes back (fuzzing finding 10).
    /// Returns the prior value as written.
    pub fn set_string_noted(
        &mut self,
        rec: &mut FileRecord,
        key: KeyPath,
        value: &str,
        registered: bool,
    ) -> Result<Option<String>, String> {
        let prior = self.raw(&key);
        self.set_value(&key, Value::from(value))?;
        let noted = prior
            .clone()
            .filter(|p| !(registered && p.trim_matches(['"', '\'']) == value));
        rec.note_set(key, noted);
        Ok(prior)
    }

    /// Sets a value, keeping the key's place and the spacing around the old
    /// value; a new key takes the indentation of its siblings.
    pub fn set_value(&mut self, key: &[String], value: Value) -> Result<(), String> {
        let (last, parent) = key.split_last().ok_or("empty key")?;
        let table = self
            .table_at_mut(parent)
            .ok_or_else(|| format!("`{}` is not a table", parent.join(".")))?;
        // A table where a value belongs (`[engine.runtime]` for podman's
        // `runtime = "..."`) would be replaced, and what it holds lost for
        // good: refuse, naming it.
        if table.get(last).is_some_and(|item| !item.is_value()) {
            return Err(format!(
                "`{}` is a table where migward sets a value: remove or rename that table",
                key.join(".")
            ));
        }
        set_in_table(table, last, value);
        Ok(())
    }
}

/// Sets `name` in `table` as [`TomlDoc::set_value`] does.
pub fn set_in_table(table: &mut Table, name: &str, value: Value) {
    if let Some(old) = table.get_mut(name).and_then(Item::as_value_mut) {
        let decor = old.decor().clone();
        *old = same_quotes(old, value);
        *old.decor_mut() = decor;
        return;
    }
    // The indentation of the last sibling (its comments stay with it).
    let sibling = table.iter().last().and_then(|(k, _)| table.key(k));
    let mut k = toml_edit::Key::new(name);
    if let Some(d) = sibling.map(|k| k.leaf_decor()) {
        let prefix = d.prefix().and_then(|p| p.as_str()).unwrap_or("");
        let indent = prefix.rsplit('\n').next().unwrap_or("");
        *k.leaf_decor_mut() = toml_edit::Decor::new(indent, " ");
    }
    table.insert_formatted(&k, Item::Value(value.decorated(" ", "")));
}

/// `new`, written with single quotes when `old` was (containerd 2.x writes
/// every string that way), so an edited line looks like its neighbours.
fn same_quotes(old: &Value, new: Value) -> Value {
    let mut bare = old.clone();
    bare.decor_mut().clear();
    let literal = old.is_str() && bare.to_string().starts_with('\'');
    match new.as_str() {
        Some(s) if literal && !s.contains(['\'', '\n']) => format!("'{s}'").parse().unwrap_or(new),
        _ => new,
    }
}

impl Doc for TomlDoc {
    fn remove(&mut self, key: &[String]) {
        if let Some((last, parent)) = key.split_last() {
            if let Some(t) = self.table_at_mut(parent) {
                t.remove(last);
            }
        }
    }

    fn restore(&mut self, key: &[String], raw: &str) -> Result<(), String> {
        let v = raw.parse::<Value>().map_err(|e| one_line(&e.to_string()))?;
        self.set_value(key, v)
    }

    fn is_empty_at(&self, key: &[String]) -> bool {
        self.table_at(key).is_some_and(Table::is_empty)
    }

    fn render(&self) -> String {
        self.doc.to_string()
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
