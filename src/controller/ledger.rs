//! The ledger: the members (image, project) an ImageShare declared and added, kept in its
//! status so that whatever leaves the declaration is removed again. Pure; no I/O.
//!
//! In status the pairs are grouped by identical project lists (`{images, projects}`), so an
//! object with 1,000 members on 50 images stores each ID once: the usual ledger is a single
//! group, and its size grows with images + projects, not images × projects.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{ImageId, MemberKey, ProjectId};
use crate::api::LedgerEntry;

/// A set of members, and the region of each image (with spec.regions), so a removal goes
/// to the right Glance also once the image is no longer observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger(BTreeSet<MemberKey>, BTreeMap<ImageId, String>);

impl Ledger {
    /// The ledger recorded in a status (empty when there is none).
    pub fn from_entries(entries: &[LedgerEntry]) -> Ledger {
        let mut ledger = Ledger::default();
        for entry in entries {
            for image in &entry.images {
                if let Some(region) = &entry.region {
                    ledger.1.insert(image.into(), region.clone());
                }
                for project in &entry.projects {
                    ledger.0.insert(MemberKey::new(image, project));
                }
            }
        }
        ledger
    }

    /// The compact form written to status: one entry per region and distinct project list,
    /// images and projects sorted, so the same ledger always serialises the same way.
    pub fn to_entries(&self) -> Vec<LedgerEntry> {
        let mut per_image: BTreeMap<&ImageId, Vec<String>> = BTreeMap::new();
        for MemberKey { image, project } in &self.0 {
            per_image
                .entry(image)
                .or_default()
                .push(project.to_string());
        }
        let mut groups: BTreeMap<(Option<&String>, Vec<String>), Vec<String>> = BTreeMap::new();
        for (image, projects) in per_image {
            let region = self.1.get(image);
            groups
                .entry((region, projects))
                .or_default()
                .push(image.to_string());
        }
        groups
            .into_iter()
            .map(|((region, projects), images)| LedgerEntry {
                region: region.cloned(),
                images,
                projects,
            })
            .collect()
    }

    /// Records the region of each image that has one.
    pub fn locate<'a>(&mut self, images: impl IntoIterator<Item = (&'a ImageId, &'a String)>) {
        for (image, region) in images {
            self.1.insert(image.clone(), region.clone());
        }
    }

    /// The region of an image, if it has one.
    pub fn region_of(&self, image: &ImageId) -> Option<&str> {
        self.1.get(image).map(String::as_str)
    }

    /// Whether the member is in the ledger.
    pub fn contains(&self, key: &MemberKey) -> bool {
        self.0.contains(key)
    }

    /// Adds a member.
    pub fn insert(&mut self, key: MemberKey) {
        self.0.insert(key);
    }

    /// Drops a member.
    pub fn remove(&mut self, key: &MemberKey) {
        self.0.remove(key);
    }

    /// The projects recorded on any image.
    pub fn projects(&self) -> impl Iterator<Item = &ProjectId> {
        self.0.iter().map(|k| &k.project)
    }

    /// Whether every member of `self` is in `other`.
    pub fn is_subset(&self, other: &Ledger) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The members, sorted by image then project.
    pub fn iter(&self) -> impl Iterator<Item = &MemberKey> {
        self.0.iter()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the ledger holds nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<MemberKey> for Ledger {
    fn from_iter<I: IntoIterator<Item = MemberKey>>(iter: I) -> Self {
        Ledger(iter.into_iter().collect(), BTreeMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(image: &str, project: &str) -> MemberKey {
        MemberKey::new(image, project)
    }

    #[test]
    fn images_with_the_same_projects_share_one_entry() {
        let ledger: Ledger = [
            pair("i1", "a"),
            pair("i1", "b"),
            pair("i2", "a"),
            pair("i2", "b"),
            pair("i3", "a"),
        ]
        .into_iter()
        .collect();
        let entries = ledger.to_entries();
        assert_eq!(
            entries,
            vec![
                LedgerEntry {
                    region: None,
                    images: vec!["i3".into()],
                    projects: vec!["a".into()],
                },
                LedgerEntry {
                    region: None,
                    images: vec!["i1".into(), "i2".into()],
                    projects: vec!["a".into(), "b".into()],
                },
            ]
        );
        assert_eq!(Ledger::from_entries(&entries), ledger);
    }

    #[test]
    fn a_thousand_projects_on_fifty_images_store_each_id_once() {
        let ledger: Ledger = (0..50)
            .flat_map(|i| {
                (0..1000).map(move |p| pair(&format!("image-{i:03}"), &format!("{p:032x}")))
            })
            .collect();
        let entries = ledger.to_entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].images.len(), 50);
        assert_eq!(entries[0].projects.len(), 1000);
        let bytes = serde_json::to_vec(&entries).unwrap_or_default().len();
        assert!(bytes < 40_000, "ledger of 50,000 pairs takes {bytes} bytes");
    }
}
