//! Retention policies in the manner of restic's `forget`: which archives of one group
//! (one BMC serial, scope and domain) to keep, and why.
//!
//! Pure: archives (id and creation time) in, a decision per archive out; no files, no
//! clock. Semantics (restic's): archives are taken newest first; `keep_last` keeps the
//! N newest; `keep_daily` keeps the newest archive of each of the N most recent days
//! that have one, and likewise per ISO week and per calendar month (UTC). An archive is
//! kept if any rule keeps it, and every rule that does is given as a reason. A policy
//! that keeps nothing is refused: it would remove everything.
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// How many archives to keep per rule; `None` = the rule is not used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub keep_last: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
}

impl Policy {
    /// Whether the policy keeps anything at all.
    pub fn keeps_something(&self) -> bool {
        [
            self.keep_last,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
        ]
        .iter()
        .any(|n| n.is_some_and(|n| n > 0))
    }
}

/// Why an archive is kept. Stable names (they appear in `backup prune` output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    Last,
    Daily,
    Weekly,
    Monthly,
    /// The newest archive of its group that verified: never removed.
    NewestVerified,
    /// Its creation time is not a valid RFC 3339 time: kept, as its age is unknown.
    UnknownTime,
    /// No archive of its group verified, so none of the group is removed.
    GroupUnverified,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Last => "last",
            Reason::Daily => "daily",
            Reason::Weekly => "weekly",
            Reason::Monthly => "monthly",
            Reason::NewestVerified => "newest verified",
            Reason::UnknownTime => "unknown creation time",
            Reason::GroupUnverified => "no archive of this BMC verified",
        }
    }
}

/// One archive as the policy sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: Uuid,
    /// RFC 3339.
    pub created_at: String,
}

/// The decision for one archive: kept (with reasons) or to be removed (no reasons).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub id: Uuid,
    pub reasons: Vec<Reason>,
}

impl Decision {
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// Applies `policy` to one group. The result is newest first.
pub fn apply(policy: &Policy, group: &[Candidate]) -> Vec<Decision> {
    let mut items: Vec<(Option<OffsetDateTime>, &Candidate)> = group
        .iter()
        .map(|c| (OffsetDateTime::parse(&c.created_at, &Rfc3339).ok(), c))
        .collect();
    // Newest first; ties by id so the result does not depend on input order.
    items.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.id.cmp(&a.1.id)));
    let mut out: Vec<Decision> = items
        .iter()
        .map(|(t, c)| Decision {
            id: c.id,
            reasons: if t.is_none() {
                vec![Reason::UnknownTime]
            } else {
                Vec::new()
            },
        })
        .collect();
    type Bucket = fn(OffsetDateTime) -> (i32, u32);
    let rules: [(Option<u32>, Reason, Bucket); 4] = [
        (policy.keep_last, Reason::Last, |_| (0, 0)),
        (policy.keep_daily, Reason::Daily, |t| {
            (t.year(), u32::from(t.ordinal()))
        }),
        (policy.keep_weekly, Reason::Weekly, |t| {
            let (y, w, _) = t.to_iso_week_date();
            (y, u32::from(w))
        }),
        (policy.keep_monthly, Reason::Monthly, |t| {
            (t.year(), u32::from(u8::from(t.month())))
        }),
    ];
    for (count, reason, bucket) in rules {
        let Some(mut left) = count else { continue };
        let mut last_bucket: Option<(i32, u32)> = None;
        for (i, (t, _)) in items.iter().enumerate() {
            if left == 0 {
                break;
            }
            let Some(t) = t else { continue };
            // keep-last: every archive is its own bucket.
            let b = if reason == Reason::Last {
                None
            } else {
                Some(bucket(t.to_offset(time::UtcOffset::UTC)))
            };
            if b.is_none() || b != last_bucket {
                out[i].reasons.push(reason);
                left -= 1;
                last_bucket = b;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: u128, t: &str) -> Candidate {
        Candidate {
            id: Uuid::from_u128(n),
            created_at: t.into(),
        }
    }

    fn kept(d: &[Decision]) -> Vec<u128> {
        d.iter()
            .filter(|d| d.keep())
            .map(|d| d.id.as_u128())
            .collect()
    }

    #[test]
    fn keep_last_keeps_the_newest_n_in_any_input_order() {
        let g = [
            c(1, "2026-11-01T10:00:00Z"),
            c(3, "2026-11-03T10:00:00Z"),
            c(2, "2026-11-02T10:00:00Z"),
        ];
        let p = Policy {
            keep_last: Some(2),
            ..Policy::default()
        };
        let d = apply(&p, &g);
        assert_eq!(kept(&d), vec![3, 2]);
        assert_eq!(d[0].reasons, vec![Reason::Last]);
        assert!(!d[2].keep());
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day_and_reasons_accumulate() {
        let g = [
            c(1, "2026-11-01T08:00:00Z"),
            c(2, "2026-11-01T20:00:00Z"),
            c(3, "2026-11-02T08:00:00Z"),
            c(4, "2026-11-02T09:00:00Z"),
            c(5, "2026-11-03T07:00:00Z"),
        ];
        let p = Policy {
            keep_last: Some(1),
            keep_daily: Some(2),
            ..Policy::default()
        };
        let d = apply(&p, &g);
        // Newest (5) is last + daily; the newest of Nov 2 (4) is daily; Nov 1 is beyond 2 days.
        assert_eq!(kept(&d), vec![5, 4]);
        assert_eq!(d[0].reasons, vec![Reason::Last, Reason::Daily]);
    }

    #[test]
    fn weekly_and_monthly_use_iso_weeks_and_calendar_months() {
        // 2026-11-29 is a Sunday (ISO week 48), 2026-11-30 a Monday (week 49).
        let g = [
            c(1, "2026-10-15T00:00:00Z"),
            c(2, "2026-11-28T00:00:00Z"),
            c(3, "2026-11-29T00:00:00Z"),
            c(4, "2026-11-30T00:00:00Z"),
        ];
        let weekly = Policy {
            keep_weekly: Some(2),
            ..Policy::default()
        };
        assert_eq!(kept(&apply(&weekly, &g)), vec![4, 3]);
        let monthly = Policy {
            keep_monthly: Some(2),
            ..Policy::default()
        };
        assert_eq!(kept(&apply(&monthly, &g)), vec![4, 1]);
    }

    #[test]
    fn an_unparsable_time_is_kept_and_a_policy_of_zeros_keeps_nothing() {
        let g = [c(1, "yesterday"), c(2, "2026-11-02T00:00:00Z")];
        let p = Policy {
            keep_last: Some(0),
            ..Policy::default()
        };
        assert!(!p.keeps_something());
        let d = apply(&p, &g);
        assert_eq!(kept(&d), vec![1]);
        assert_eq!(
            d.iter().find(|x| x.keep()).unwrap().reasons,
            vec![Reason::UnknownTime]
        );
    }
}
