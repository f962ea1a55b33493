//! Strategic merge patch, applied the way kube-apiserver's `strategicpatch.StrategicMergeMapPatch`
//! applies it (`apimachinery/pkg/util/strategicpatch/patch.go`, `mergeMap` and its helpers).
//!
//! A JSON merge patch cannot say "add this container" without resending the whole list; strategic
//! merge patch can, because each list field carries a strategy from the Go types (see `schema`).
//! The algorithm below is a port of the Go one, step for step, so that `kubectl apply` and
//! `kubectl patch` get the same result from kvol as from a real cluster: `$patch` directives,
//! `$retainKeys`, `$setElementOrder/<field>` (processed before the other keys, and with the Go
//! ordering rules: set order > patch order > live order), `$deleteFromPrimitiveList/<field>`,
//! merge-by-key, and `null` deleting a key.
//!
//! Deliberate differences from Go, each where Go would hand a half-processed value to the typed
//! decoder: a patch value for a key the original lacks is merged into an empty value instead of
//! being copied verbatim (so nested `$patch`/`$retainKeys` directives and `null`s are processed
//! rather than leaking into the object), `$patch: replace` likewise cleans what it keeps, and a
//! `$deleteFromPrimitiveList` for an absent list is a no-op (Go would create the list from the
//! items to delete). Go's sort of items missing from an order list uses an inconsistent comparator;
//! kvol keeps such items, stably, after the ordered ones.

use serde_json::{Map, Value};

use super::schema::{Schema, Strategy};
use super::PatchError;

const DIRECTIVE_MARKER: &str = "$patch";
const DELETE_DIRECTIVE: &str = "delete";
const REPLACE_DIRECTIVE: &str = "replace";
const MERGE_DIRECTIVE: &str = "merge";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";

// mergepatch's sentinel errors, with their Go wording.
const ERR_BAD_PATCH_FORMAT_FOR_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
const ERR_BAD_PATCH_FORMAT_FOR_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const ERR_BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER: &str = "invalid patch format of setElementOrder list";
const ERR_NO_LIST_OF_LISTS: &str = "lists of lists are not supported";

type Result<T, E = PatchError> = std::result::Result<T, E>;

/// A malformed patch: kube answers 400 BadRequest.
fn format_error(message: impl Into<String>) -> PatchError {
    PatchError::StrategicPatchFormat { message: message.into() }
}

/// A patch that cannot merge into this object: 422 Invalid.
fn merge_error(detail: impl Into<String>) -> PatchError {
    PatchError::MergeStrategic { detail: detail.into() }
}

/// Applies `patch` to `original` (both JSON objects) with the strategies of `schema`.
pub(crate) fn merge(
    original: Map<String, Value>,
    patch: Map<String, Value>,
    schema: &Schema,
) -> Result<Map<String, Value>> {
    merge_map(original, patch, "", schema)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Go's `mergeMap` with `MergeParallelList` and `IgnoreUnmatchedNulls` set, as the server uses it.
fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    path: &str,
    schema: &Schema,
) -> Result<Map<String, Value>> {
    if let Some(directive) = patch.remove(DIRECTIVE_MARKER) {
        return match directive.as_str() {
            Some(REPLACE_DIRECTIVE) => merge_map(Map::new(), patch, path, schema),
            Some(DELETE_DIRECTIVE) => Ok(Map::new()),
            _ => Err(format_error(format!(
                "unknown patch type: {} in map: {}",
                go_fmt(&directive),
                go_fmt_map_with(&patch, DIRECTIVE_MARKER, &directive)
            ))),
        };
    }

    apply_retain_keys(&mut original, &mut patch)?;
    merge_set_element_order(&mut original, &mut patch, path, schema)?;

    for (key, patch_value) in patch {
        let (key, is_delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
            (extract_key(&key, DELETE_FROM_PRIMITIVE_LIST_PREFIX)?, true)
        } else {
            (key, false)
        };
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        let field_path = join(path, &key);
        let Some(original_value) = original.remove(&key) else {
            if !is_delete_list {
                let fresh = fresh_value(patch_value, &field_path, schema)?;
                original.insert(key, fresh);
            }
            continue;
        };
        let field = schema.field(&field_path);
        let merged = match (original_value, patch_value) {
            (Value::Object(o), Value::Object(p)) => {
                if field.strategy == Strategy::Replace {
                    Value::Object(p)
                } else {
                    Value::Object(merge_map(o, p, &field_path, schema)?)
                }
            }
            (Value::Array(o), Value::Array(p)) => {
                if field.strategy == Strategy::Merge {
                    Value::Array(merge_slice(o, p, field.merge_key, &field_path, schema, is_delete_list)?)
                } else {
                    Value::Array(p)
                }
            }
            (_, p) => fresh_value(p, &field_path, schema)?,
        };
        original.insert(key, merged);
    }
    Ok(original)
}

/// A patch value for a key the original lacks: merged into an empty value of its own type, so its
/// directives are processed (see the module doc).
fn fresh_value(value: Value, path: &str, schema: &Schema) -> Result<Value> {
    let field = schema.field(path);
    Ok(match value {
        Value::Object(p) if field.strategy != Strategy::Replace => {
            Value::Object(merge_map(Map::new(), p, path, schema)?)
        }
        Value::Array(p) if field.strategy == Strategy::Merge => {
            Value::Array(merge_slice(Vec::new(), p, field.merge_key, path, schema, false)?)
        }
        other => other,
    })
}

/// Go's `applyRetainKeysDirective`: drop the original's keys that `$retainKeys` does not list, after
/// checking that the patch only sets listed keys.
fn apply_retain_keys(original: &mut Map<String, Value>, patch: &mut Map<String, Value>) -> Result<()> {
    let Some(retain) = patch.remove(RETAIN_KEYS_DIRECTIVE) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(format_error(ERR_BAD_PATCH_FORMAT_FOR_RETAIN_KEYS));
    };
    let retained = |key: &str| retain.iter().any(|v| v.as_str() == Some(key));
    for (key, value) in patch.iter() {
        if value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            || key.starts_with(SET_ELEMENT_ORDER_PREFIX)
        {
            continue;
        }
        if !retained(key) {
            return Err(format_error(ERR_BAD_PATCH_FORMAT_FOR_RETAIN_KEYS));
        }
    }
    original.retain(|key, _| retained(key));
    Ok(())
}

/// Go's `mergePatchIntoOriginal`: merge each list that has a `$setElementOrder/<field>` directive and
/// order the result (set order first, then the patch's order, then the live order), removing the
/// list from the patch so the main loop does not merge it again.
fn merge_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    path: &str,
    schema: &Schema,
) -> Result<()> {
    let directives: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER_PREFIX)).cloned().collect();
    for directive in directives {
        let Some(order) = patch.remove(&directive) else { continue };
        let Value::Array(order) = order else {
            return Err(format_error(bad_arg_type("[]interface {}", &order)));
        };
        let field_name = extract_key(&directive, SET_ELEMENT_ORDER_PREFIX)?;
        let original_list = match original.get(&field_name) {
            None => None,
            Some(Value::Array(list)) => Some(list.clone()),
            Some(other) => return Err(format_error(bad_arg_type("[]interface {}", other))),
        };
        let patch_list = match patch.get(&field_name) {
            None => None,
            Some(Value::Array(list)) => Some(list.clone()),
            Some(other) => return Err(format_error(bad_arg_type("[]interface {}", other))),
        };
        let field_path = join(path, &field_name);
        let field = schema.field(&field_path);
        validate_patch_with_set_order_list(patch_list.as_deref().unwrap_or(&[]), &order, field.merge_key)?;

        let merged = match (original_list.clone(), patch_list.clone()) {
            (Some(o), None) => o,
            (None, Some(p)) => match fresh_value(Value::Array(p), &field_path, schema)? {
                Value::Array(list) => list,
                _ => Vec::new(),
            },
            (Some(o), Some(p)) => {
                if field.strategy == Strategy::Merge {
                    merge_slice(o, p, field.merge_key, &field_path, schema, false)?
                } else {
                    p
                }
            }
            (None, None) => continue,
        };

        let original_list = original_list.unwrap_or_default();
        let patch_list = patch_list.unwrap_or_default();
        let Some(kind) = slice_element_kind(&[&original_list, &patch_list])? else {
            // Both lists are empty: nothing to order (Go fails here with "no elements").
            original.insert(field_name.clone(), Value::Array(merged));
            patch.remove(&field_name);
            continue;
        };
        let (patch_items, server_only) = match field.merge_key {
            None => partition_primitives(merged, &order),
            Some(key) => partition_maps(merged, &order, key)?,
        };
        let both = normalize_element_order(patch_items, server_only, &order, &original_list, field.merge_key, kind)?;
        original.insert(field_name.clone(), Value::Array(both));
        patch.remove(&field_name);
    }
    Ok(())
}

/// Go's `validatePatchWithSetOrderList`: the patch list's items must appear in the order list, in
/// the same relative order (deletions and directives excepted).
fn validate_patch_with_set_order_list(patch_list: &[Value], order: &[Value], merge_key: Option<&str>) -> Result<()> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let non_delete = match merge_key {
        Some(_) => extract_to_delete_items(patch_list.to_vec())?.0,
        None => patch_list.to_vec(),
    };
    let (mut patch_index, mut order_index) = (0, 0);
    while patch_index < non_delete.len() && order_index < order.len() {
        if contains_directive_marker(&non_delete[patch_index]) {
            patch_index += 1;
            continue;
        }
        if merge_key_value_equal(&non_delete[patch_index], &order[order_index], merge_key)? {
            patch_index += 1;
        }
        order_index += 1;
    }
    if patch_index < non_delete.len() && order_index >= order.len() {
        return Err(format_error(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER_PREFIX} list:\n{}\n",
            go_fmt_list(patch_list),
            go_fmt_list(order)
        )));
    }
    Ok(())
}

fn contains_directive_marker(item: &Value) -> bool {
    item.as_object().is_some_and(|m| m.contains_key(DIRECTIVE_MARKER))
}

/// Go's `extractToDeleteItems`: split a list of maps into kept items and `$patch: delete` items.
fn extract_to_delete_items(list: Vec<Value>) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut keep = Vec::new();
    let mut delete = Vec::new();
    for item in list {
        let Some(map) = item.as_object() else {
            return Err(format_error(bad_arg_type("map[string]interface {}", &item)));
        };
        if map.get(DIRECTIVE_MARKER).and_then(Value::as_str) == Some(DELETE_DIRECTIVE) {
            delete.push(item);
        } else {
            keep.push(item);
        }
    }
    Ok((keep, delete))
}

fn merge_key_value_equal(left: &Value, right: &Value, merge_key: Option<&str>) -> Result<bool> {
    let Some(key) = merge_key else {
        return Ok(left == right);
    };
    let (Some(l), Some(r)) = (left.as_object(), right.as_object()) else {
        let bad = if left.is_object() { right } else { left };
        return Err(format_error(bad_arg_type("map[string]interface {}", bad)));
    };
    let Some(lv) = l.get(key) else { return Err(merge_error(no_merge_key(l, key))) };
    let Some(rv) = r.get(key) else { return Err(merge_error(no_merge_key(r, key))) };
    Ok(lv == rv)
}

/// Go's `extractKey`: `$prefix/<field>` → `<field>`.
fn extract_key(directive: &str, prefix: &str) -> Result<String> {
    match directive.split_once('/') {
        Some((p, field)) if p == prefix => Ok(field.to_string()),
        _ if prefix == DELETE_FROM_PRIMITIVE_LIST_PREFIX => Err(format_error(ERR_BAD_PATCH_FORMAT_FOR_PRIMITIVE_LIST)),
        _ => Err(format_error(ERR_BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER)),
    }
}

/// What a list holds, for the places where Go switches on `reflect.Kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ElementKind {
    Map,
    Scalar,
}

/// Go's `sliceElementType`: every element of every list must have the same JSON type, and not be a
/// list. `None` when the lists are all empty.
fn slice_element_kind(lists: &[&[Value]]) -> Result<Option<ElementKind>> {
    fn type_of(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    let mut first: Option<&Value> = None;
    for item in lists.iter().flat_map(|l| l.iter()) {
        match first {
            None => {
                if item.is_array() {
                    return Err(merge_error(ERR_NO_LIST_OF_LISTS));
                }
                first = Some(item);
            }
            Some(f) if type_of(f) != type_of(item) => {
                let all: Vec<String> = lists.iter().map(|l| go_fmt_list(l)).collect();
                return Err(merge_error(format!("list element types are not identical: [{}]", all.join(" "))));
            }
            Some(_) => {}
        }
    }
    Ok(first.map(|f| if f.is_object() { ElementKind::Map } else { ElementKind::Scalar }))
}

/// Go's `mergeSlice`: merge two lists of a field whose strategy is merge.
fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: Option<&'static str>,
    path: &str,
    schema: &Schema,
    is_delete_list: bool,
) -> Result<Vec<Value>> {
    let Some(kind) = slice_element_kind(&[&original, &patch])? else {
        return Ok(original);
    };
    if kind == ElementKind::Scalar {
        if is_delete_list {
            return Ok(original.into_iter().filter(|v| !patch.contains(v)).collect());
        }
        let mut both = original.clone();
        both.extend(patch.iter().cloned());
        let merged = deduplicate_scalars(both);
        let (patch_items, server_only) = match merge_key {
            None => partition_primitives(merged, &patch),
            Some(key) => partition_maps(merged, &patch, key)?,
        };
        return normalize_element_order(patch_items, server_only, &patch, &original, merge_key, kind);
    }

    let Some(key) = merge_key else {
        return Err(merge_error("cannot merge lists without merge key for type struct"));
    };
    let (original, patch) = merge_slice_with_special_elements(original, patch, key, path, schema)?;
    let merged = merge_slice_without_special_elements(original.clone(), &patch, key, path, schema)?;
    let (patch_items, server_only) = partition_maps(merged, &patch, key)?;
    normalize_element_order(patch_items, server_only, &patch, &original, Some(key), kind)
}

/// Go's `mergeSliceWithSpecialElements`: apply the `$patch` elements of a list of maps (delete by
/// key, replace the whole list) and return the original and the patch without them.
fn merge_slice_with_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
    path: &str,
    schema: &Schema,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut without_special = Vec::new();
    let mut replace = false;
    for item in patch {
        let Some(map) = item.as_object() else {
            return Err(format_error(bad_arg_type("map[string]interface {}", &item)));
        };
        match map.get(DIRECTIVE_MARKER) {
            None => without_special.push(item),
            Some(directive) => match directive.as_str() {
                Some(DELETE_DIRECTIVE) => {
                    let Some(value) = map.get(key) else { return Err(merge_error(no_merge_key(map, key))) };
                    let value = value.clone();
                    original = delete_matching_entries(original, key, &value)?;
                }
                // Keep iterating to prune any other `$patch` elements, as Go does.
                Some(REPLACE_DIRECTIVE) => replace = true,
                Some(MERGE_DIRECTIVE) => {
                    return Err(format_error("merging lists cannot yet be specified in the patch"));
                }
                _ => {
                    return Err(format_error(format!(
                        "unknown patch type: {} in map: {}",
                        go_fmt(directive),
                        go_fmt(&item)
                    )))
                }
            },
        }
    }
    if replace {
        let cleaned = without_special
            .into_iter()
            .map(|item| match item {
                Value::Object(m) => merge_map(Map::new(), m, path, schema).map(Value::Object),
                other => Ok(other),
            })
            .collect::<Result<Vec<_>>>()?;
        return Ok((cleaned, Vec::new()));
    }
    Ok((original, without_special))
}

fn delete_matching_entries(original: Vec<Value>, key: &str, value: &Value) -> Result<Vec<Value>> {
    let mut kept = Vec::with_capacity(original.len());
    for (i, item) in original.into_iter().enumerate() {
        let Some(map) = item.as_object() else {
            return Err(merge_error(format!("value for key {i} is not a map.")));
        };
        if map.get(key) != Some(value) {
            kept.push(item);
        }
    }
    Ok(kept)
}

/// Go's `findMapInSliceBasedOnKeyValue`.
fn find_by_key(list: &[Value], key: &str, value: &Value) -> Result<Option<usize>> {
    for (i, item) in list.iter().enumerate() {
        let Some(map) = item.as_object() else {
            return Err(merge_error(format!("value for key {i} is not a map.")));
        };
        if map.get(key) == Some(value) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Go's `mergeSliceWithoutSpecialElements`: merge each patch element into the original element with
/// the same key, or append it.
fn merge_slice_without_special_elements(
    mut original: Vec<Value>,
    patch: &[Value],
    key: &str,
    path: &str,
    schema: &Schema,
) -> Result<Vec<Value>> {
    for item in patch {
        let Some(map) = item.as_object() else {
            return Err(format_error(bad_arg_type("map[string]interface {}", item)));
        };
        let Some(value) = map.get(key) else { return Err(merge_error(no_merge_key(map, key))) };
        match find_by_key(&original, key, value)? {
            Some(i) => {
                let existing = match std::mem::take(&mut original[i]) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                original[i] = Value::Object(merge_map(existing, map.clone(), path, schema)?);
            }
            None => original.push(Value::Object(merge_map(Map::new(), map.clone(), path, schema)?)),
        }
    }
    Ok(original)
}

/// Go's `partitionPrimitivesByPresentInList`.
fn partition_primitives(list: Vec<Value>, by: &[Value]) -> (Vec<Value>, Vec<Value>) {
    list.into_iter().partition(|v| by.contains(v))
}

/// Go's `partitionMapsByPresentInList`.
fn partition_maps(list: Vec<Value>, by: &[Value], key: &str) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut in_patch = Vec::new();
    let mut server_only = Vec::new();
    for item in list {
        let Some(map) = item.as_object() else {
            return Err(format_error(bad_arg_type("map[string]interface {}", &item)));
        };
        let Some(value) = map.get(key) else { return Err(merge_error(no_merge_key(map, key))) };
        if find_by_key(by, key, value)?.is_some() {
            in_patch.push(item);
        } else {
            server_only.push(item);
        }
    }
    Ok((in_patch, server_only))
}

/// Go's `normalizeElementOrder`: sort the patch items by the patch order and the server-only items
/// by the live order, then interleave them keeping both relative orders.
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
    kind: ElementKind,
) -> Result<Vec<Value>> {
    let patch_items = normalize_slice_order(patch_items, patch_order, merge_key, kind)?;
    let server_only = normalize_slice_order(server_only, server_order, merge_key, kind)?;
    Ok(merge_sorted_slice(server_only, patch_items, server_order, merge_key, kind))
}

/// Go's `normalizeSliceOrder`.
fn normalize_slice_order(
    to_sort: Vec<Value>,
    order: &[Value],
    merge_key: Option<&str>,
    kind: ElementKind,
) -> Result<Vec<Value>> {
    let (mut to_sort, to_delete) = if kind == ElementKind::Map {
        let key = merge_key.unwrap_or_default();
        for item in to_sort.iter().chain(order) {
            let Some(map) = item.as_object() else {
                return Err(format_error(bad_arg_type("map[string]interface {}", item)));
            };
            if !map.contains_key(key) {
                return Err(merge_error(no_merge_key(map, key)));
            }
        }
        extract_to_delete_items(to_sort)?
    } else {
        (to_sort, Vec::new())
    };
    // Items absent from `order` go last, stably (Go's comparator is inconsistent for them).
    to_sort.sort_by_key(|item| index_of(order, item, merge_key, kind).unwrap_or(usize::MAX));
    to_sort.extend(to_delete);
    Ok(to_sort)
}

/// Go's `index`: the position of `value` in `list`, comparing merge-key values for maps.
fn index_of(list: &[Value], value: &Value, merge_key: Option<&str>, kind: ElementKind) -> Option<usize> {
    match kind {
        ElementKind::Map => {
            let key = merge_key.unwrap_or_default();
            let wanted = value.as_object().and_then(|m| m.get(key));
            list.iter().position(|item| item.as_object().and_then(|m| m.get(key)) == wanted)
        }
        ElementKind::Scalar => list.iter().position(|item| item == value),
    }
}

/// Go's `mergeSortedSlice`: insert the server-only items (`left`) among the patch items (`right`),
/// each before the first patch item that comes after it in the live order.
fn merge_sorted_slice(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: Option<&str>,
    kind: ElementKind,
) -> Vec<Value> {
    let less = |l: &Value, r: &Value| match (
        index_of(server_order, l, merge_key, kind),
        index_of(server_order, r, merge_key, kind),
    ) {
        (Some(li), Some(ri)) => li < ri,
        _ => false,
    };
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => less(l, r),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// Go's `deduplicateScalars`, including its swap-from-the-end order.
fn deduplicate_scalars(mut s: Vec<Value>) -> Vec<Value> {
    let mut i = 0;
    while i + 1 < s.len() {
        let mut j = i + 1;
        while j < s.len() {
            if s[i] == s[j] {
                s.swap_remove(j);
            } else {
                j += 1;
            }
        }
        i += 1;
    }
    s
}

fn no_merge_key(map: &Map<String, Value>, key: &str) -> String {
    format!("map: {} does not contain declared merge key: {key}", go_fmt_map(map))
}

/// Go's `mergepatch.ErrBadArgType` wording.
fn bad_arg_type(expected: &str, actual: &Value) -> String {
    format!("expected a {expected}, but received a {}", go_type_name(actual))
}

fn go_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// A value as Go's `%v` prints the decoded JSON (`map[k:v]`, `[a b]`), for error messages.
pub(crate) fn go_fmt(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => go_fmt_list(a),
        Value::Object(m) => go_fmt_map(m),
    }
}

fn go_fmt_list(list: &[Value]) -> String {
    let items: Vec<String> = list.iter().map(go_fmt).collect();
    format!("[{}]", items.join(" "))
}

fn go_fmt_map(map: &Map<String, Value>) -> String {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let items: Vec<String> = keys.iter().map(|k| format!("{k}:{}", go_fmt(&map[k.as_str()]))).collect();
    format!("map[{}]", items.join(" "))
}

/// `go_fmt_map` of `map` plus one more entry (the directive already removed from it).
fn go_fmt_map_with(map: &Map<String, Value>, key: &str, value: &Value) -> String {
    let mut full = map.clone();
    full.insert(key.to_string(), value.clone());
    go_fmt_map(&full)
}
