//! Grandfather-father-son retention for pgBackRest backup sets.
//!
//! pgBackRest's own retention only knows counts (`repo-retention-full`, `-diff`) and ages; it
//! cannot say "keep one backup per week for a month and one per month for half a year". The
//! operator therefore decides with [`plan`] which sets to keep and expires every other one with
//! `pgbackrest expire --set=<label>`. [`plan`] is pure: it sees only the sets and the policy, never
//! the clock.
//!
//! # Semantics
//!
//! * **Periods** are taken from a set's `stop` time in UTC: calendar days, ISO weeks (ISO year
//!   and week number, so 2026-12-31 and 2027-01-01 are both in 2026-W53), calendar months and
//!   calendar years.
//! * **Order**: sets are ordered by `stop`, ties broken by `label` (the greater label counts as
//!   the newer). The result does not depend on the order of the input.
//! * **Rules**: `daily = n` keeps the newest set of each of the last `n` days *that have a
//!   backup* (the meaning of restic's `--keep-daily`), not of the last `n` calendar days before
//!   now; `weekly`, `monthly` and `yearly` likewise with their periods. Time passing alone
//!   therefore expires nothing: a registry whose backups have been failing for a month keeps
//!   its last good ones instead of watching them age out. Each rule picks
//!   independently; a set picked by any rule is kept. A count larger than the number of periods
//!   with a backup keeps one set per period and nothing more.
//! * **Always kept**: the newest set, even when all counts are 0, and the newest full backup.
//!   The newest full is normally in the newest set's chain anyway; keeping it outright also
//!   covers input whose chains are cut, and pgBackRest refuses `expire --set` of the latest full
//!   when no other full exists, so a plan naming it might not be carried out.
//! * **Closure**: the base chain of every kept set is kept: an incremental's `prior`, its
//!   `prior`, and so on up to the full; a differential's `prior`, which is its full. A set
//!   kept only for this reason is a restore dependency, not a restore point of the policy.
//! * **Sets we don't understand are kept**: a differential or incremental without a `prior`, and
//!   any set whose `prior` is not among the input sets, is kept as it is (its chain stops there).
//!   pgBackRest never lists such a set (expiring a base expires its dependents), so the input is
//!   incomplete or inconsistent, and deleting backups on the strength of a partial picture is the
//!   one mistake retention must not make. Cycles in `prior` are tolerated the same way.
//! * **Labels are assumed unique**, as they are in a stanza's `backup.info`. If a label appears
//!   twice anyway, it is kept when any set carrying it is kept, and is listed once.
//!
//! # The plan
//!
//! [`Plan::keep`] lists the kept labels oldest first. [`Plan::expire`] lists every other label,
//! **newest first**, and the caller runs `pgbackrest expire --set=<label>` for each in that order.
//!
//! `expire --set=X` removes X together with every set depending on it. Closure guarantees that no
//! kept set depends on a set in `expire`, so any call removes only sets that are in `expire`,
//! whatever the order. Newest first is chosen because dependents are always newer than their
//! base: by the time X is expired its expired dependents are already gone, so each call removes
//! exactly the set it names, and no call names a set that an earlier call has already removed
//! (pgBackRest would only warn, but the log would no longer match the plan). An interrupted run
//! also leaves a state that the next plan simply continues.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

/// The type of a pgBackRest backup, spelled as in `pgbackrest info --output=json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BackupKind {
    #[serde(rename = "full")]
    Full,
    #[serde(rename = "diff")]
    Differential,
    #[serde(rename = "incr")]
    Incremental,
}

/// One backup set as pgBackRest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSet {
    pub label: String,
    pub kind: BackupKind,
    /// label of the backup this one depends on (pgBackRest's "prior"); None for a full
    pub prior: Option<String>,
    /// when the backup finished (UTC)
    pub stop: DateTime<Utc>,
}

/// How many periods of each length keep their newest backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

/// What to keep and what to expire; every input label is in exactly one of the two lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Labels to keep, oldest first.
    pub keep: Vec<String>,
    /// Labels to pass to `pgbackrest expire --set`, newest first (see the module documentation).
    pub expire: Vec<String>,
}

/// A calendar period; only equality matters, and that the value never decreases with time.
type Period = (i32, u32);

/// The period a backup's stop time falls in, for one rule.
type PeriodOf = fn(&DateTime<Utc>) -> Period;

fn day(stop: &DateTime<Utc>) -> Period {
    (stop.year(), stop.ordinal())
}

fn iso_week(stop: &DateTime<Utc>) -> Period {
    // The ISO year, not the calendar year: 2027-01-01 belongs to 2026-W53.
    let week = stop.iso_week();
    (week.year(), week.week())
}

fn month(stop: &DateTime<Utc>) -> Period {
    (stop.year(), stop.month())
}

fn year(stop: &DateTime<Utc>) -> Period {
    (stop.year(), 0)
}

/// Decides which backup sets the policy keeps; see the module documentation for the rules.
pub fn plan(sets: &[BackupSet], policy: &Policy) -> Plan {
    // Oldest first with ties broken by label, so the result is independent of the input order.
    let mut ordered: Vec<&BackupSet> = sets.iter().collect();
    ordered.sort_by(|a, b| (a.stop, &a.label).cmp(&(b.stop, &b.label)));

    let Some(newest) = ordered.last() else {
        return Plan::default();
    };
    let mut keep: HashSet<&str> = HashSet::new();
    keep.insert(&newest.label);
    if let Some(newest_full) = ordered
        .iter()
        .rev()
        .find(|set| set.kind == BackupKind::Full)
    {
        keep.insert(&newest_full.label);
    }

    // The rules count periods that have a backup rather than periods back from now: if backups
    // fail for a month, time passing alone must not expire the registry's last good backups.
    let rules: [(u32, PeriodOf); 4] = [
        (policy.daily, day),
        (policy.weekly, iso_week),
        (policy.monthly, month),
        (policy.yearly, year),
    ];
    for (count, period_of) in rules {
        keep_newest_per_period(&ordered, count, period_of, &mut keep);
    }

    let mut by_label: HashMap<&str, Vec<&BackupSet>> = HashMap::new();
    for set in &ordered {
        by_label.entry(set.label.as_str()).or_default().push(set);
    }
    for set in &ordered {
        if !base_is_known(set, &by_label) {
            keep.insert(&set.label);
        }
    }
    keep_base_chains(&by_label, &mut keep);
    debug_assert!(closure_holds(sets, &keep));

    // `listed` makes a duplicated label appear once (see the module documentation).
    let mut listed: HashSet<&str> = HashSet::new();
    let keep_labels = ordered
        .iter()
        .filter(|set| keep.contains(set.label.as_str()) && listed.insert(&set.label))
        .map(|set| set.label.clone())
        .collect();
    let expire_labels = ordered
        .iter()
        .rev()
        .filter(|set| !keep.contains(set.label.as_str()) && listed.insert(&set.label))
        .map(|set| set.label.clone())
        .collect();
    Plan {
        keep: keep_labels,
        expire: expire_labels,
    }
}

/// Keeps the newest set of each of the last `count` periods that have a set.
fn keep_newest_per_period<'a>(
    oldest_first: &[&'a BackupSet],
    count: u32,
    period_of: PeriodOf,
    keep: &mut HashSet<&'a str>,
) {
    let mut picked = 0;
    let mut last_period = None;
    // Newest first, the first set seen of a period is its newest; the sort keeps a period's sets
    // together because every period function is monotonic in time.
    for set in oldest_first.iter().rev() {
        if picked >= count {
            break;
        }
        let period = period_of(&set.stop);
        if last_period != Some(period) {
            keep.insert(&set.label);
            picked += 1;
            last_period = Some(period);
        }
    }
}

/// Whether everything `set` depends on is in the input (or it depends on nothing).
fn base_is_known(set: &BackupSet, by_label: &HashMap<&str, Vec<&BackupSet>>) -> bool {
    match (&set.prior, set.kind) {
        (None, BackupKind::Full) => true,
        // A differential or incremental needs a base; without one we can't tell what it needs.
        (None, BackupKind::Differential | BackupKind::Incremental) => false,
        (Some(prior), _) => by_label.contains_key(prior.as_str()),
    }
}

/// Adds the base chain of every kept set: a kept backup must stay restorable.
fn keep_base_chains<'a>(
    by_label: &HashMap<&'a str, Vec<&'a BackupSet>>,
    keep: &mut HashSet<&'a str>,
) {
    let mut pending: Vec<&str> = keep.iter().copied().collect();
    while let Some(label) = pending.pop() {
        for set in by_label.get(label).into_iter().flatten() {
            let Some(prior) = set.prior.as_deref() else {
                continue;
            };
            // A prior outside the input ends the chain (the set itself is kept as not
            // understood); `insert` returning false ends a cycle.
            if let Some((&prior, _)) = by_label.get_key_value(prior)
                && keep.insert(prior)
            {
                pending.push(prior);
            }
        }
    }
}

/// Whether every kept set's prior, when it is among `sets`, is kept too.
fn closure_holds(sets: &[BackupSet], keep: &HashSet<&str>) -> bool {
    let labels: HashSet<&str> = sets.iter().map(|set| set.label.as_str()).collect();
    sets.iter()
        .filter(|set| keep.contains(set.label.as_str()))
        .filter_map(|set| set.prior.as_deref())
        .filter(|prior| labels.contains(prior))
        .all(|prior| keep.contains(prior))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::{Duration, NaiveDate, NaiveDateTime};
    use std::collections::BTreeMap;

    fn at(text: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
    }

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    /// pgBackRest-style labels: `20251231-023000F`, `20251228-023000F_20251231-023000D`.
    fn stamp(stop: &DateTime<Utc>) -> String {
        stop.format("%Y%m%d-%H%M%S").to_string()
    }

    fn full(stop: DateTime<Utc>) -> BackupSet {
        BackupSet {
            label: format!("{}F", stamp(&stop)),
            kind: BackupKind::Full,
            prior: None,
            stop,
        }
    }

    fn dependent(stop: DateTime<Utc>, kind: BackupKind, prior: &BackupSet) -> BackupSet {
        let full_label = prior.label.split('_').next().unwrap();
        let suffix = if kind == BackupKind::Differential {
            "D"
        } else {
            "I"
        };
        BackupSet {
            label: format!("{full_label}_{}{suffix}", stamp(&stop)),
            kind,
            prior: Some(prior.label.clone()),
            stop,
        }
    }

    fn policy(daily: u32, weekly: u32, monthly: u32, yearly: u32) -> Policy {
        Policy {
            daily,
            weekly,
            monthly,
            yearly,
        }
    }

    /// One full backup a day at 02:30 UTC, `first` to `last` inclusive.
    fn daily_fulls(first: &str, last: &str) -> Vec<BackupSet> {
        let last = date(last);
        date(first)
            .iter_days()
            .take_while(|day| *day <= last)
            .map(|day| full(day.and_hms_opt(2, 30, 0).unwrap().and_utc()))
            .collect()
    }

    /// The dates of the kept sets, sorted.
    fn kept_dates(sets: &[BackupSet], plan: &Plan) -> Vec<String> {
        let mut dates: Vec<String> = sets
            .iter()
            .filter(|set| plan.keep.contains(&set.label))
            .map(|set| set.stop.date_naive().to_string())
            .collect();
        dates.sort();
        dates
    }

    /// Dates written as groups of whitespace-separated `YYYY-MM-DD`, sorted and deduplicated.
    fn dates(groups: &[&str]) -> Vec<String> {
        let mut dates: Vec<String> = groups
            .iter()
            .flat_map(|group| group.split_whitespace())
            .map(str::to_string)
            .collect();
        dates.sort();
        dates.dedup();
        dates
    }

    fn label_set(labels: &[String]) -> HashSet<&str> {
        labels.iter().map(String::as_str).collect()
    }

    /// The invariants every plan must satisfy, checked from the outside.
    fn assert_invariants(sets: &[BackupSet], plan: &Plan) {
        let keep = label_set(&plan.keep);
        let expire = label_set(&plan.expire);
        let all: HashSet<&str> = sets.iter().map(|set| set.label.as_str()).collect();
        assert!(
            keep.is_disjoint(&expire),
            "a label is both kept and expired"
        );
        assert_eq!(
            &keep | &expire,
            all,
            "keep and expire must cover every label"
        );
        assert_eq!(
            keep.len() + expire.len(),
            plan.keep.len() + plan.expire.len()
        );
        let newest = sets
            .iter()
            .max_by(|a, b| (a.stop, &a.label).cmp(&(b.stop, &b.label)));
        if let Some(newest) = newest {
            assert!(
                keep.contains(newest.label.as_str()),
                "the newest set is kept"
            );
        }
        // No kept set has an expired ancestor: walking up from any kept set never meets `expire`.
        let by_label: HashMap<&str, &BackupSet> =
            sets.iter().map(|set| (set.label.as_str(), set)).collect();
        for label in &keep {
            let mut seen = HashSet::new();
            let mut current = by_label[label];
            while let Some(prior) = current.prior.as_deref() {
                assert!(
                    !expire.contains(prior),
                    "{label} is kept but its ancestor {prior} expires"
                );
                match by_label.get(prior) {
                    Some(next) if seen.insert(prior) => current = next,
                    _ => break,
                }
            }
        }
        // Orders: keep oldest first, expire newest first.
        let rank: HashMap<&str, (DateTime<Utc>, &str)> = sets
            .iter()
            .map(|set| (set.label.as_str(), (set.stop, set.label.as_str())))
            .collect();
        assert!(
            plan.keep
                .windows(2)
                .all(|w| rank[w[0].as_str()] < rank[w[1].as_str()])
        );
        assert!(
            plan.expire
                .windows(2)
                .all(|w| rank[w[0].as_str()] > rank[w[1].as_str()])
        );
    }

    #[test]
    fn two_years_of_daily_fulls_keep_exactly_the_policy() {
        let sets = daily_fulls("2024-01-01", "2025-12-31");
        let plan = plan(&sets, &policy(7, 4, 6, 1));
        assert_invariants(&sets, &plan);
        // 2025-12-31 is a Wednesday in ISO week 2026-W01 (Mon 12-29 .. Sun 2026-01-04).
        let expected = dates(&[
            // daily: the last 7 days
            "2025-12-25 2025-12-26 2025-12-27 2025-12-28 2025-12-29 2025-12-30 2025-12-31",
            // weekly: 2026-W01 -> 12-31, W52 -> Sun 12-28, W51 -> Sun 12-21, W50 -> Sun 12-14
            "2025-12-31 2025-12-28 2025-12-21 2025-12-14",
            // monthly: the last day of Dec, Nov, Oct, Sep, Aug, Jul
            "2025-12-31 2025-11-30 2025-10-31 2025-09-30 2025-08-31 2025-07-31",
            // yearly: 2025
            "2025-12-31",
        ]);
        assert_eq!(kept_dates(&sets, &plan), expected);
        assert_eq!(plan.keep.len() + plan.expire.len(), 731);
    }

    #[test]
    fn two_years_ending_mid_month_with_more_years_than_backups() {
        let sets = daily_fulls("2024-03-05", "2026-03-04");
        let plan = plan(&sets, &policy(7, 4, 6, 5));
        assert_invariants(&sets, &plan);
        // 2026-03-04 is a Wednesday; ISO weeks Mon 03-02.., Mon 02-23.., Mon 02-16.., Mon 02-09...
        let expected = dates(&[
            // daily
            "2026-02-26 2026-02-27 2026-02-28 2026-03-01 2026-03-02 2026-03-03 2026-03-04",
            // weekly: Wed 03-04 (week of Mon 03-02), then Sundays 03-01, 02-22, 02-15
            "2026-03-04 2026-03-01 2026-02-22 2026-02-15",
            // monthly
            "2026-03-04 2026-02-28 2026-01-31 2025-12-31 2025-11-30 2025-10-31",
            // yearly: only three years have a backup
            "2026-03-04 2025-12-31 2024-12-31",
        ]);
        assert_eq!(kept_dates(&sets, &plan), expected);
    }

    #[test]
    fn daily_counts_days_with_a_backup_not_days_before_now() {
        // Backups every 5 days, then nothing: daily=7 still keeps 7 backups spanning 30 days.
        let sets: Vec<BackupSet> = (0..20)
            .map(|i| full(at("2025-01-01 02:30:00") + Duration::days(5 * i)))
            .collect();
        let plan = plan(&sets, &policy(7, 0, 0, 0));
        assert_invariants(&sets, &plan);
        let kept: Vec<&str> = plan.keep.iter().map(String::as_str).collect();
        let expected: Vec<String> = sets[13..].iter().map(|set| set.label.clone()).collect();
        assert_eq!(kept, expected);
    }

    #[test]
    fn a_week_long_gap_is_skipped_by_the_daily_rule() {
        let mut sets = daily_fulls("2025-06-01", "2025-06-10");
        sets.extend(daily_fulls("2025-06-18", "2025-06-20"));
        let plan = plan(&sets, &policy(5, 0, 0, 0));
        assert_invariants(&sets, &plan);
        let expected = dates(&["2025-06-09 2025-06-10 2025-06-18 2025-06-19 2025-06-20"]);
        assert_eq!(kept_dates(&sets, &plan), expected);
    }

    #[test]
    fn of_two_backups_in_one_day_the_newer_is_the_daily_pick() {
        let early = full(at("2025-06-02 01:00:00"));
        let late = full(at("2025-06-02 23:00:00"));
        let next = full(at("2025-06-03 02:30:00"));
        let sets = vec![late.clone(), early.clone(), next.clone()];
        let plan = plan(&sets, &policy(2, 0, 0, 0));
        assert_invariants(&sets, &plan);
        assert_eq!(plan.keep, vec![late.label, next.label]);
        assert_eq!(plan.expire, vec![early.label]);
    }

    #[test]
    fn midnight_belongs_to_the_day_it_starts() {
        let noon = full(at("2025-06-02 12:00:00"));
        let before_midnight = full(at("2025-06-02 23:59:59"));
        let midnight = full(at("2025-06-03 00:00:00"));
        let sets = vec![noon.clone(), before_midnight.clone(), midnight.clone()];
        let plan = plan(&sets, &policy(2, 0, 0, 0));
        assert_invariants(&sets, &plan);
        assert_eq!(plan.keep, vec![before_midnight.label, midnight.label]);
        assert_eq!(plan.expire, vec![noon.label]);
    }

    #[test]
    fn iso_week_53_spans_the_year_boundary() {
        let sunday_w52 = full(at("2026-12-27 02:30:00")); // 2026-W52
        let thursday_w53 = full(at("2026-12-31 02:30:00")); // 2026-W53
        let friday_w53 = full(at("2027-01-01 02:30:00")); // 2026-W53 too
        let sets = vec![sunday_w52.clone(), thursday_w53.clone(), friday_w53.clone()];

        let weekly = plan(&sets, &policy(0, 2, 0, 0));
        assert_invariants(&sets, &weekly);
        assert_eq!(
            weekly.keep,
            vec![sunday_w52.label.clone(), friday_w53.label.clone()]
        );
        assert_eq!(weekly.expire, vec![thursday_w53.label.clone()]);

        // Calendar months and years do split there.
        for by_calendar in [policy(0, 0, 2, 0), policy(0, 0, 0, 2)] {
            let plan = plan(&sets, &by_calendar);
            assert_eq!(
                plan.keep,
                vec![thursday_w53.label.clone(), friday_w53.label.clone()]
            );
            assert_eq!(plan.expire, vec![sunday_w52.label.clone()]);
        }
    }

    #[test]
    fn leap_day_is_a_day_and_the_end_of_february() {
        let sets = daily_fulls("2024-02-27", "2024-03-01");
        let monthly = plan(&sets, &policy(0, 0, 2, 0));
        assert_eq!(
            kept_dates(&sets, &monthly),
            dates(&["2024-02-29 2024-03-01"])
        );
        let daily = plan(&sets, &policy(3, 0, 0, 0));
        let expected = dates(&["2024-02-28 2024-02-29 2024-03-01"]);
        assert_eq!(kept_dates(&sets, &daily), expected);
    }

    /// Fulls on Sundays at 02:30, on other days a differential (based on the week's full) or an
    /// incremental (based on the previous day's backup).
    fn weekly_fulls_with(kind: BackupKind, first: &str, last: &str) -> Vec<BackupSet> {
        let mut sets: Vec<BackupSet> = Vec::new();
        let mut last_full: Option<BackupSet> = None;
        for set in daily_fulls(first, last) {
            let set = match (&last_full, set.stop.weekday(), kind) {
                (None, _, _) | (_, chrono::Weekday::Sun, _) => set,
                (Some(base), _, BackupKind::Differential) => dependent(set.stop, kind, base),
                (Some(_), _, _) => dependent(set.stop, kind, sets.last().unwrap()),
            };
            if set.kind == BackupKind::Full {
                last_full = Some(set.clone());
            }
            sets.push(set);
        }
        sets
    }

    #[test]
    fn differentials_keep_their_full() {
        let sets = weekly_fulls_with(BackupKind::Differential, "2024-01-07", "2025-12-31");
        let plan = plan(&sets, &policy(7, 4, 6, 1));
        assert_invariants(&sets, &plan);
        // The monthly pick of October is Friday 10-31, a differential on Sunday 10-26's full;
        // the differentials between them are not needed for it and expire.
        let expected = dates(&[
            // the picks of two_years_of_daily_fulls_keep_exactly_the_policy
            "2025-12-25 2025-12-26 2025-12-27 2025-12-28 2025-12-29 2025-12-30 2025-12-31",
            "2025-12-21 2025-12-14 2025-11-30 2025-10-31 2025-09-30 2025-08-31 2025-07-31",
            // the Sunday fulls they are based on (12-28, 12-21, 12-14, 11-30, 08-31 are picks)
            "2025-10-26 2025-09-28 2025-07-27",
        ]);
        assert_eq!(kept_dates(&sets, &plan), expected);
    }

    #[test]
    fn incrementals_keep_their_whole_chain() {
        let sets = weekly_fulls_with(BackupKind::Incremental, "2024-01-07", "2025-12-31");
        let plan = plan(&sets, &policy(7, 4, 6, 1));
        assert_invariants(&sets, &plan);
        // The same picks as with daily fulls, each with its chain back to the Sunday full: Friday
        // 2025-10-31 (monthly) needs Sunday 10-26's full and every incremental since.
        let expected = dates(&[
            // daily picks 12-25..31 with their chains back to Sundays 12-21 and 12-28
            "2025-12-21 2025-12-22 2025-12-23 2025-12-24 2025-12-25 2025-12-26 2025-12-27",
            "2025-12-28 2025-12-29 2025-12-30 2025-12-31",
            // weekly 12-14 and monthly 11-30 and 08-31 are Sunday fulls
            "2025-12-14 2025-11-30 2025-08-31",
            // monthly Fri 10-31, Tue 09-30 and Thu 07-31 with their chains
            "2025-10-26 2025-10-27 2025-10-28 2025-10-29 2025-10-30 2025-10-31",
            "2025-09-28 2025-09-29 2025-09-30",
            "2025-07-27 2025-07-28 2025-07-29 2025-07-30 2025-07-31",
        ]);
        assert_eq!(kept_dates(&sets, &plan), expected);
    }

    #[test]
    fn empty_input_gives_an_empty_plan() {
        assert_eq!(plan(&[], &policy(7, 4, 6, 1)), Plan::default());
    }

    #[test]
    fn all_counts_zero_keep_only_the_newest_and_its_chain() {
        let sets = weekly_fulls_with(BackupKind::Incremental, "2025-06-01", "2025-06-18");
        let plan = plan(&sets, &policy(0, 0, 0, 0));
        assert_invariants(&sets, &plan);
        // Wednesday 06-18 is an incremental on Sunday 06-15's full.
        let expected = dates(&["2025-06-15 2025-06-16 2025-06-17 2025-06-18"]);
        assert_eq!(kept_dates(&sets, &plan), expected);
    }

    #[test]
    fn a_set_whose_base_is_unknown_is_kept() {
        let base = full(at("2025-06-01 02:30:00"));
        let mut orphan = dependent(at("2025-06-02 02:30:00"), BackupKind::Incremental, &base);
        orphan.prior = Some("20250531-023000F".into()); // not in the input
        let mut baseless = dependent(at("2025-06-03 02:30:00"), BackupKind::Differential, &base);
        baseless.prior = None;
        let on_orphan = dependent(at("2025-06-04 02:30:00"), BackupKind::Incremental, &orphan);
        let newest = full(at("2025-06-05 02:30:00"));
        let sets = vec![
            base.clone(),
            orphan.clone(),
            baseless.clone(),
            on_orphan.clone(),
            newest.clone(),
        ];
        let plan = plan(&sets, &policy(0, 0, 0, 0));
        assert_invariants(&sets, &plan);
        assert_eq!(plan.keep, vec![orphan.label, baseless.label, newest.label]);
        assert_eq!(plan.expire, vec![on_orphan.label, base.label]);
    }

    #[test]
    fn the_newest_full_is_kept_even_outside_the_newest_chain() {
        // The newest set's chain ends at a prior we don't know, so no other rule keeps the
        // newest full, the newest restore point that depends on nothing.
        let older = full(at("2025-06-01 02:30:00"));
        let newest_full = full(at("2025-06-02 02:30:00"));
        let mut newest = dependent(
            at("2025-06-03 02:30:00"),
            BackupKind::Incremental,
            &newest_full,
        );
        newest.prior = Some("20250602-000000F".into());
        let sets = vec![older.clone(), newest_full.clone(), newest.clone()];
        let plan = plan(&sets, &policy(0, 0, 0, 0));
        assert_invariants(&sets, &plan);
        assert_eq!(plan.keep, vec![newest_full.label, newest.label]);
        assert_eq!(plan.expire, vec![older.label]);
    }

    #[test]
    fn a_cycle_of_priors_does_not_hang() {
        let mut a = full(at("2025-06-01 02:30:00"));
        let b = dependent(at("2025-06-02 02:30:00"), BackupKind::Incremental, &a);
        a.prior = Some(b.label.clone());
        let sets = vec![a, b];
        let plan = plan(&sets, &policy(0, 0, 0, 0));
        assert_invariants(&sets, &plan);
        assert!(plan.expire.is_empty());
    }

    #[test]
    fn duplicate_labels_are_listed_once_and_kept_if_either_is() {
        let old = full(at("2025-06-01 02:30:00"));
        let mut copy = full(at("2025-06-03 02:30:00"));
        copy.label = old.label.clone();
        let middle = full(at("2025-06-02 02:30:00"));
        let sets = vec![old.clone(), middle.clone(), copy];
        let plan = plan(&sets, &policy(0, 0, 0, 0));
        assert_eq!(plan.keep, vec![old.label]);
        assert_eq!(plan.expire, vec![middle.label]);
    }

    #[test]
    fn equal_stops_are_ordered_by_label_whatever_the_input_order() {
        let stop = at("2025-06-02 02:30:00");
        let mut a = full(stop);
        a.label = "20250602-023000F-a".into();
        let mut b = full(stop);
        b.label = "20250602-023000F-b".into();
        let forward = plan(&[a.clone(), b.clone()], &policy(1, 1, 1, 1));
        let backward = plan(&[b.clone(), a.clone()], &policy(1, 1, 1, 1));
        assert_eq!(forward, backward);
        assert_eq!(forward.keep, vec![b.label]);
        assert_eq!(forward.expire, vec![a.label]);
    }

    /// xorshift64*: deterministic, good enough to shake out calendars.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }
    }

    /// A random calendar: gaps, several backups a day, equal stops, all three kinds, and now and
    /// then a set whose prior is not in the input.
    fn random_calendar(rng: &mut Rng) -> Vec<BackupSet> {
        let mut day = date("2020-01-01") + Duration::days(rng.below(3650) as i64);
        let mut sets: Vec<BackupSet> = Vec::new();
        let mut last_full: Option<usize> = None;
        for _ in 0..rng.below(300) {
            day += Duration::days(if rng.below(10) == 0 {
                1 + rng.below(40) as i64
            } else {
                1
            });
            let mut seconds: Vec<i64> = (0..1 + rng.below(3))
                .map(|_| rng.below(86_400) as i64)
                .collect();
            seconds.sort();
            for second in seconds {
                let mut stop =
                    day.and_hms_opt(0, 0, 0).unwrap().and_utc() + Duration::seconds(second);
                // Now and then two sets stop at the same time, so ties are broken by label.
                if let Some(previous) = sets.last()
                    && rng.below(20) == 0
                {
                    stop = previous.stop;
                }
                let roll = rng.below(100);
                let mut set = match (last_full, roll) {
                    (None, _) | (_, 0..15) => full(stop),
                    (Some(base), 15..50) => dependent(stop, BackupKind::Differential, &sets[base]),
                    (Some(_), _) => dependent(stop, BackupKind::Incremental, &sets[sets.len() - 1]),
                };
                // Unique labels even when two sets stop in the same second.
                set.label = format!("{}-{:04}", set.label, sets.len());
                if set.kind == BackupKind::Incremental && rng.below(50) == 0 {
                    set.prior = Some("missing".into());
                }
                if set.kind == BackupKind::Full {
                    last_full = Some(sets.len());
                }
                sets.push(set);
            }
        }
        sets
    }

    /// The policy computed another way: group by period (named by strftime), take the newest of
    /// each of the last `count` groups, then close over priors until nothing changes.
    fn oracle(sets: &[BackupSet], policy: &Policy) -> HashSet<String> {
        let newer = |a: &&BackupSet, b: &&BackupSet| (a.stop, &a.label).cmp(&(b.stop, &b.label));
        let mut picks: HashSet<String> = HashSet::new();
        if let Some(newest) = sets.iter().max_by(newer) {
            picks.insert(newest.label.clone());
        }
        if let Some(full) = sets
            .iter()
            .filter(|s| s.kind == BackupKind::Full)
            .max_by(newer)
        {
            picks.insert(full.label.clone());
        }
        for (count, format) in [
            (policy.daily, "%Y-%m-%d"),
            (policy.weekly, "%G-W%V"),
            (policy.monthly, "%Y-%m"),
            (policy.yearly, "%Y"),
        ] {
            let mut newest_per_period: BTreeMap<String, &BackupSet> = BTreeMap::new();
            for set in sets {
                let period = set.stop.format(format).to_string();
                let entry = newest_per_period.entry(period).or_insert(set);
                if newer(&set, entry).is_gt() {
                    *entry = set;
                }
            }
            for set in newest_per_period.values().rev().take(count as usize) {
                picks.insert(set.label.clone());
            }
        }
        let labels: HashSet<&str> = sets.iter().map(|s| s.label.as_str()).collect();
        let orphans: HashSet<String> = sets
            .iter()
            .filter(|s| s.prior.as_deref().is_some_and(|p| !labels.contains(p)))
            .map(|s| s.label.clone())
            .collect();
        let mut kept: HashSet<String> = &picks | &orphans;
        loop {
            let before = kept.len();
            for set in sets {
                if let Some(prior) = set.prior.as_deref()
                    && kept.contains(&set.label)
                    && labels.contains(prior)
                {
                    kept.insert(prior.to_string());
                }
            }
            if kept.len() == before {
                return kept;
            }
        }
    }

    #[test]
    fn random_calendars_satisfy_the_invariants_and_match_an_independent_oracle() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut rounds_with_expiry, mut rounds_with_orphans) = (0, 0);
        for round in 0..300 {
            let mut sets = random_calendar(&mut rng);
            let policy = policy(
                rng.below(10) as u32,
                rng.below(6) as u32,
                rng.below(13) as u32,
                rng.below(4) as u32,
            );
            let plan = plan(&sets, &policy);
            assert_invariants(&sets, &plan);

            let expected = oracle(&sets, &policy);
            assert_eq!(
                label_set(&plan.keep),
                expected.iter().map(String::as_str).collect(),
                "round {round}"
            );

            // Kept sets that are neither an ancestor of a kept set nor kept for an unknown base
            // are policy picks or the newest: at most one per count, plus one. The newest full
            // is extra only when it is not in a kept chain (a missing prior cut the chain).
            let by_label: HashMap<&str, &BackupSet> =
                sets.iter().map(|s| (s.label.as_str(), s)).collect();
            let keep = label_set(&plan.keep);
            let ancestors: HashSet<&str> = keep
                .iter()
                .filter_map(|label| by_label[label].prior.as_deref())
                .filter(|prior| by_label.contains_key(prior))
                .collect();
            let not_understood = |label: &&str| {
                by_label[label]
                    .prior
                    .as_deref()
                    .is_some_and(|p| !by_label.contains_key(p))
            };
            let non_chain: HashSet<&str> = keep
                .iter()
                .copied()
                .filter(|l| !ancestors.contains(l) && !not_understood(l))
                .collect();
            let newest_full = sets
                .iter()
                .filter(|s| s.kind == BackupKind::Full)
                .max_by(|a, b| (a.stop, &a.label).cmp(&(b.stop, &b.label)));
            let full_extra = newest_full.is_some_and(|f| non_chain.contains(f.label.as_str()));
            let budget = policy.daily
                + policy.weekly
                + policy.monthly
                + policy.yearly
                + 1
                + u32::from(full_extra);
            assert!(non_chain.len() as u32 <= budget, "round {round}");
            rounds_with_expiry += usize::from(!plan.expire.is_empty());
            rounds_with_orphans +=
                usize::from(sets.iter().any(|s| s.prior.as_deref() == Some("missing")));

            // The input order doesn't matter.
            for i in (1..sets.len()).rev() {
                sets.swap(i, rng.below(i as u64 + 1) as usize);
            }
            assert_eq!(super::plan(&sets, &policy), plan, "round {round}");
        }
        // The generator really exercises what it is meant to.
        assert!(rounds_with_expiry > 200 && rounds_with_orphans > 50);
    }
}
