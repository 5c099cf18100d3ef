//! Co-signing: this replica's signed statistics and the other replicas' (their
//! [`StatsVote`]s, from NATS) make a [`CertifiedStats`] once at least the threshold of
//! the pinned keys signed the same bytes. Pure state, no I/O: the publisher feeds it
//! this replica's vote, the vote subscriber feeds it the others', and both publish the
//! certificate it returns.
//!
//! Votes are kept per key, the newest window each: a replica whose figures for the
//! current window differ from the figures a threshold of replicas agree on is named as
//! disagreeing (its signature is not counted), and so is this replica when the others
//! agree without it.

use std::collections::BTreeMap;

use serde::Serialize;
use truebit_protocol::certificate::{CertifiedStats, KeySet, StatsVote};
use truebit_protocol::identity::PublicKey;

/// A replica as the page and the API show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Replica {
    pub name: String,
    pub key: String,
}

/// Where the statistics of the current window stand.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Certification {
    /// The window (Unix seconds) of this replica's latest statistics.
    pub window: Option<u64>,
    pub threshold: usize,
    pub replicas: usize,
    /// Whether a threshold of the pinned keys signed this replica's figures.
    pub certified: bool,
    /// The replicas whose signatures over this replica's figures count.
    pub signers: Vec<Replica>,
    /// Replicas whose figures for the window differ from those a threshold agreed on
    /// (this replica included, when the others agree without it).
    pub disagreeing: Vec<Replica>,
    /// Pinned keys that sent no signature for the window yet (down, or still catching
    /// up with the stream): the replica's name when it sent one before, else empty.
    pub silent: Vec<Replica>,
}

#[derive(Debug)]
pub struct Certifier {
    replica: String,
    key: PublicKey,
    keys: KeySet,
    own: Option<StatsVote>,
    /// The newest vote of every other pinned key.
    votes: BTreeMap<PublicKey, StatsVote>,
    /// Signers of the last certificate handed out, by window.
    issued: Option<(u64, usize)>,
}

/// What a new vote changed.
#[derive(Debug)]
pub enum Outcome {
    /// A certificate with more signers than the last one for its window: publish it.
    Certified(Box<CertifiedStats>),
    /// Nothing new to publish.
    Unchanged,
}

impl Certifier {
    pub fn new(replica: String, key: PublicKey, keys: KeySet) -> Certifier {
        Certifier {
            replica,
            key,
            keys,
            own: None,
            votes: BTreeMap::new(),
            issued: None,
        }
    }

    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// Whether there are other replicas to exchange signatures with.
    pub fn has_peers(&self) -> bool {
        self.keys.keys().len() > 1
    }

    /// This replica's own vote (its latest statistics).
    pub fn own(&mut self, vote: StatsVote) -> Outcome {
        self.own = Some(vote);
        self.evaluate()
    }

    /// Another replica's vote (already opened: parsed and its signature checked). Votes
    /// of keys that are not pinned, and older than the key's last vote, are ignored.
    pub fn peer(&mut self, vote: StatsVote) -> Outcome {
        let key = vote.signature().key;
        if key == self.key || !self.keys.contains(&key) {
            return Outcome::Unchanged;
        }
        if self
            .votes
            .get(&key)
            .is_some_and(|old| old.stats().window > vote.stats().window)
        {
            return Outcome::Unchanged;
        }
        self.votes.insert(key, vote);
        self.evaluate()
    }

    /// The certificate of this replica's latest figures, when a threshold signed them.
    pub fn certificate(&self) -> Option<CertifiedStats> {
        let own = self.own.as_ref()?;
        let signatures: Vec<_> = self
            .agreeing(own)
            .map(|v| *v.signature())
            .chain(std::iter::once(*own.signature()))
            .collect();
        let certificate = CertifiedStats::new(own.stats().clone(), signatures).ok()?;
        certificate.verify(&self.keys).ok()?;
        Some(certificate)
    }

    fn agreeing<'a>(&'a self, own: &'a StatsVote) -> impl Iterator<Item = &'a StatsVote> + 'a {
        self.votes
            .values()
            .filter(move |v| v.stats_bytes() == own.stats_bytes())
    }

    fn evaluate(&mut self) -> Outcome {
        let Some(certificate) = self.certificate() else {
            return Outcome::Unchanged;
        };
        let window = certificate.stats().window.as_secs();
        let signers = certificate.signatures().len();
        if self
            .issued
            .is_some_and(|(w, n)| w > window || (w == window && n >= signers))
        {
            return Outcome::Unchanged;
        }
        self.issued = Some((window, signers));
        Outcome::Certified(Box::new(certificate))
    }

    fn replica_of(&self, vote: &StatsVote) -> Replica {
        Replica {
            name: vote.replica().to_owned(),
            key: vote.signature().key.to_string(),
        }
    }

    /// Who signed this replica's latest figures, and who disagrees.
    pub fn status(&self) -> Certification {
        let mut status = Certification {
            threshold: self.keys.threshold(),
            replicas: self.keys.keys().len(),
            ..Certification::default()
        };
        let Some(own) = &self.own else {
            return status;
        };
        let window = own.stats().window;
        status.window = Some(window.as_secs());
        let same_window: Vec<&StatsVote> = self
            .votes
            .values()
            .filter(|v| v.stats().window == window)
            .collect();
        let agreeing: Vec<&StatsVote> = same_window
            .iter()
            .copied()
            .filter(|v| v.stats_bytes() == own.stats_bytes())
            .collect();
        status.certified = agreeing.len() + 1 >= self.keys.threshold();
        status.signers = std::iter::once(own)
            .chain(agreeing.iter().copied())
            .map(|v| self.replica_of(v))
            .collect();
        status.signers.sort_by(|a, b| a.name.cmp(&b.name));
        if status.certified {
            status.disagreeing = same_window
                .iter()
                .filter(|v| v.stats_bytes() != own.stats_bytes())
                .map(|v| self.replica_of(v))
                .collect();
        } else {
            // Do a threshold of the others agree on other figures? Then this replica
            // is the odd one.
            let mut groups: BTreeMap<&[u8], usize> = BTreeMap::new();
            for v in &same_window {
                *groups.entry(v.stats_bytes()).or_default() += 1;
            }
            if let Some((bytes, _)) = groups
                .into_iter()
                .find(|(_, n)| *n >= self.keys.threshold())
            {
                status.disagreeing = std::iter::once(own)
                    .chain(
                        same_window
                            .iter()
                            .copied()
                            .filter(|v| v.stats_bytes() != bytes),
                    )
                    .map(|v| self.replica_of(v))
                    .collect();
                status.disagreeing.dedup();
            }
        }
        status.disagreeing.sort_by(|a, b| a.name.cmp(&b.name));
        status.silent = self
            .keys
            .keys()
            .iter()
            .filter(|k| **k != self.key && !same_window.iter().any(|v| v.signature().key == **k))
            .map(|k| Replica {
                name: self
                    .votes
                    .get(k)
                    .map(|v| v.replica().to_owned())
                    .unwrap_or_default(),
                key: k.to_string(),
            })
            .collect();
        status
    }

    /// The name of this replica.
    pub fn replica(&self) -> &str {
        &self.replica
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use truebit_protocol::sign::SigningKey;
    use truebit_protocol::stats::NetworkStats;
    use truebit_protocol::window::WindowStart;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn stats(window: u64, active: Option<u64>) -> NetworkStats {
        let mut s = NetworkStats::empty(WindowStart::new(window).expect("aligned"), 5);
        s.active_nodes = active;
        s
    }

    fn vote(seed: u8, window: u64, active: Option<u64>) -> StatsVote {
        StatsVote::sign(&format!("r{seed}"), stats(window, active), &key(seed)).expect("vote")
    }

    fn certifier(threshold: usize) -> Certifier {
        let keys = KeySet::new(
            (1..=3)
                .map(|s| PublicKey::from(&key(s).verifying_key()))
                .collect(),
            threshold,
        )
        .expect("keys");
        Certifier::new("r1".into(), PublicKey::from(&key(1).verifying_key()), keys)
    }

    const W: u64 = 1_717_243_200;

    #[test]
    fn two_matching_signatures_certify_and_a_third_with_other_figures_is_named() {
        let mut c = certifier(2);
        assert!(matches!(c.own(vote(1, W, Some(9))), Outcome::Unchanged));
        assert!(!c.status().certified);
        let Outcome::Certified(cert) = c.peer(vote(2, W, Some(9))) else {
            panic!("2 of 3 certify");
        };
        assert_eq!(cert.signatures().len(), 2);
        let silent = c.status().silent;
        assert_eq!(silent.len(), 1, "replica 3 has not signed yet");
        assert_eq!(
            silent[0].key,
            PublicKey::from(&key(3).verifying_key()).to_string()
        );
        assert!(matches!(c.peer(vote(3, W, Some(10))), Outcome::Unchanged));
        let s = c.status();
        assert!(s.certified);
        let names = |v: &[Replica]| v.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&s.signers), ["r1", "r2"]);
        assert_eq!(names(&s.disagreeing), ["r3"]);
        // The third replica recomputes and agrees: a certificate with 3 signers.
        let Outcome::Certified(cert) = c.peer(vote(3, W, Some(9))) else {
            panic!("3 of 3");
        };
        assert_eq!(cert.signatures().len(), 3);
        assert!(c.status().disagreeing.is_empty());
        assert!(c.status().silent.is_empty());
    }

    #[test]
    fn this_replica_is_named_when_the_others_agree_without_it() {
        let mut c = certifier(2);
        c.own(vote(1, W, Some(1)));
        c.peer(vote(2, W, Some(9)));
        c.peer(vote(3, W, Some(9)));
        let s = c.status();
        assert!(!s.certified);
        assert!(c.certificate().is_none());
        let names: Vec<_> = s.disagreeing.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["r1"]);
    }

    #[test]
    fn votes_of_unpinned_keys_and_older_windows_are_ignored() {
        let mut c = certifier(2);
        c.own(vote(1, W + 300, Some(9)));
        c.peer(vote(7, W + 300, Some(9)));
        assert!(!c.status().certified);
        c.peer(vote(2, W + 300, Some(9)));
        assert!(c.status().certified);
        c.peer(vote(2, W, Some(9)));
        assert!(
            c.status().certified,
            "an older vote does not replace a newer one"
        );
    }
}
