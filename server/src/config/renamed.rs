//! Keys that were renamed or moved. An old name keeps working for one schema version, with a
//! warning naming the new key; then it is removed from [`RENAMED_KEYS`] and becomes an unknown
//! key like any other.

use super::check::Problem;
use super::layers::Layer;

/// `(old key, new key)`, both as key paths (`storage.segment_bytes_max`).
pub const RENAMED_KEYS: [(&str, &str); 1] = [
    // The name the first flag and environment variable used (--segment-bytes-max).
    ("segment_bytes_max", "storage.segment_bytes_max"),
];

/// Moves every old key of `layer` to its new name, warning for each; a layer that sets both
/// names is a problem, since it is not clear which one it means.
pub fn apply(layer: &mut Layer, warnings: &mut Vec<String>, problems: &mut Vec<Problem>) {
    for (old, new) in RENAMED_KEYS {
        let Some((value, origin)) = layer.remove(old) else { continue };
        if layer.get(new).is_some() {
            problems.push(Problem::new(
                origin,
                format!("{old} and {new} are both set; {old} is the old name of {new}, remove it"),
            ));
            continue;
        }
        warnings.push(format!("{origin}: the key {old} is now {new}"));
        layer.set(new, value, origin);
    }
}
