//! Sharding (`--shard-selector`): which ImageShares this installation reconciles, by a
//! Kubernetes label selector, as Flux shards its controllers. Every installation still
//! watches all ImageShares: overlaps and revocation must see the objects of other shards.
//! Parsing and matching are pure.

use std::collections::BTreeSet;

use kube::core::{Expression, Selector, SelectorExt};

use crate::api::ImageShare;

/// The ImageShares one installation reconciles.
#[derive(Clone, Debug, Default)]
pub struct Shard(Option<Selector>);

impl Shard {
    /// Every ImageShare (no selector).
    pub fn all() -> Shard {
        Shard(None)
    }

    /// Parses a label selector as kubectl writes it: requirements separated by commas,
    /// each `key=value`, `key==value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`,
    /// `key` or `!key`.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let mut expressions = Vec::new();
        for requirement in split(text) {
            expressions.push(requirement_of(requirement.trim())?);
        }
        if expressions.is_empty() {
            return Err(format!("{text:?} is an empty label selector"));
        }
        Ok(Shard(Some(expressions.into_iter().collect())))
    }

    /// Whether this installation reconciles `share`.
    pub fn handles(&self, share: &ImageShare) -> bool {
        let labels = share.metadata.labels.clone().unwrap_or_default();
        self.0.as_ref().is_none_or(|s| s.matches(&labels))
    }
}

/// The requirements of a selector: split at commas outside parentheses.
fn split(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// One requirement.
fn requirement_of(text: &str) -> Result<Expression, String> {
    let word = |w: &str| {
        let w = w.trim();
        let valid = !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
        valid
            .then(|| w.to_string())
            .ok_or_else(|| format!("{w:?} in label selector requirement {text:?}"))
    };
    let set = |list: &str| -> Result<BTreeSet<String>, String> {
        let inner = list
            .trim()
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'));
        let inner = inner.ok_or_else(|| format!("{text:?}: a set is written (a,b)"))?;
        inner.split(',').map(word).collect()
    };
    if let Some(key) = text.strip_prefix('!') {
        return Ok(Expression::DoesNotExist(word(key)?));
    }
    if let Some((key, values)) = text.split_once(" notin ") {
        return Ok(Expression::NotIn(word(key)?, set(values)?));
    }
    if let Some((key, values)) = text.split_once(" in ") {
        return Ok(Expression::In(word(key)?, set(values)?));
    }
    if let Some((key, value)) = text.split_once("!=") {
        return Ok(Expression::NotEqual(word(key)?, word(value)?));
    }
    if let Some((key, value)) = text.split_once("==").or_else(|| text.split_once('=')) {
        return Ok(Expression::Equal(word(key)?, word(value)?));
    }
    Ok(Expression::Exists(word(text)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures;

    fn labelled(labels: &[(&str, &str)]) -> ImageShare {
        let mut share = ImageShare::new("x", fixtures::spec());
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        share.metadata.labels = Some(labels.collect());
        share
    }

    #[test]
    fn a_shard_handles_the_objects_its_selector_matches() {
        let shard = Shard::parse("imageshare.dev/shard=eu, tier in (gold,silver),!legacy");
        let shard = shard.unwrap_or_default();
        assert!(shard.handles(&labelled(&[
            ("imageshare.dev/shard", "eu"),
            ("tier", "gold")
        ])));
        assert!(!shard.handles(&labelled(&[
            ("imageshare.dev/shard", "us"),
            ("tier", "gold")
        ])));
        assert!(!shard.handles(&labelled(&[
            ("imageshare.dev/shard", "eu"),
            ("tier", "gold"),
            ("legacy", "")
        ])));
        assert!(!shard.handles(&labelled(&[("imageshare.dev/shard", "eu")])));
        let rest = Shard::parse("imageshare.dev/shard notin (eu),team!=b").unwrap_or_default();
        assert!(rest.handles(&labelled(&[])));
        assert!(!rest.handles(&labelled(&[("imageshare.dev/shard", "eu")])));
        assert!(Shard::all().handles(&labelled(&[])));
    }

    #[test]
    fn a_malformed_selector_is_refused_with_the_requirement_named() {
        for bad in ["", "a in b", "a=b c", "tier in (gold", ","] {
            let refused = Shard::parse(bad);
            assert!(refused.is_err(), "{bad:?} was accepted");
        }
        let message = Shard::parse("a=b c").err().unwrap_or_default();
        assert!(message.contains("a=b c"), "{message}");
    }
}
