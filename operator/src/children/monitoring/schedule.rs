//! How long a backup may be missing before it is late: the longest gap between two runs of the
//! backup's cron schedule. Only what the alert needs: the five numeric fields with `*`, lists,
//! ranges, steps and three-letter names, read the way cron reads them (UTC).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{Datelike, Duration as Days, NaiveDate};

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One field: the values it allows and whether it was `*` (cron treats a restricted
/// day-of-month and day-of-week as either-or).
struct Field {
    values: BTreeSet<u32>,
    any: bool,
}

fn value(text: &str, names: &[&str], offset: u32) -> Option<u32> {
    if let Ok(number) = text.parse() {
        return Some(number);
    }
    let upper = text.to_ascii_uppercase();
    let index = names.iter().position(|name| *name == upper)?;
    Some(u32::try_from(index).ok()? + offset)
}

fn field(text: &str, min: u32, max: u32, names: &[&str], offset: u32) -> Option<Field> {
    let any = text == "*" || text == "?";
    let mut values = BTreeSet::new();
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, step.parse::<u32>().ok().filter(|s| *s > 0)?),
            None => (item, 1),
        };
        let (low, high) = match range {
            "*" | "?" => (min, max),
            _ => match range.split_once('-') {
                Some((low, high)) => (value(low, names, offset)?, value(high, names, offset)?),
                // `5/15` means from 5 to the end in steps of 15.
                None if item.contains('/') => (value(range, names, offset)?, max),
                None => {
                    let single = value(range, names, offset)?;
                    (single, single)
                }
            },
        };
        if low < min || high > max || low > high {
            return None;
        }
        values.extend((low..=high).step_by(step as usize));
    }
    Some(Field { values, any })
}

/// The longest time between two consecutive runs of `schedule` over a year, or None when the
/// expression uses what this reader does not handle (L, W, #) or runs less than twice a year.
pub fn longest_gap(schedule: &str) -> Option<Duration> {
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    let [minute, hour, day, month, weekday] = fields.as_slice() else {
        return None;
    };
    let minutes = field(minute, 0, 59, &[], 0)?;
    let hours = field(hour, 0, 23, &[], 0)?;
    let days = field(day, 1, 31, &[], 0)?;
    let months = field(month, 1, 12, &MONTHS, 1)?;
    let mut weekdays = field(weekday, 0, 7, &WEEKDAYS, 0)?;
    if weekdays.values.remove(&7) {
        weekdays.values.insert(0);
    }
    let start = NaiveDate::from_ymd_opt(2026, 1, 1)?;
    let mut runs: Vec<i64> = Vec::new();
    for offset in 0..400 {
        let date = start + Days::days(offset);
        let day_matches = days.values.contains(&date.day());
        let weekday_matches = weekdays
            .values
            .contains(&date.weekday().num_days_from_sunday());
        let runs_today = match (days.any, weekdays.any) {
            (true, true) => true,
            (false, true) => day_matches,
            (true, false) => weekday_matches,
            (false, false) => day_matches || weekday_matches,
        };
        if !runs_today || !months.values.contains(&date.month()) {
            continue;
        }
        for hour in &hours.values {
            for minute in &minutes.values {
                runs.push(offset * 1440 + i64::from(*hour) * 60 + i64::from(*minute));
            }
        }
    }
    let longest = runs.windows(2).map(|pair| pair[1] - pair[0]).max()?;
    Some(Duration::from_secs(u64::try_from(longest).ok()? * 60))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hours(schedule: &str) -> f64 {
        longest_gap(schedule).unwrap().as_secs_f64() / 3600.0
    }

    #[test]
    fn daily_weekly_and_hourly_schedules() {
        assert_eq!(hours("30 2 * * *"), 24.0);
        assert_eq!(hours("0 */6 * * *"), 6.0);
        assert_eq!(hours("0 5 * * 0"), 168.0);
        assert_eq!(hours("0 5 * * SUN"), 168.0);
        // Monday, Wednesday and Friday: the weekend is the longest gap.
        assert_eq!(hours("0 1 * * 1,3,5"), 72.0);
        assert_eq!(hours("15,45 * * * *"), 0.5);
    }

    #[test]
    fn monthly_schedules_see_the_longest_month() {
        assert_eq!(hours("0 3 1 * *"), 31.0 * 24.0);
        // Day of month or day of week, as cron reads it: the 1st or any Sunday.
        assert!(hours("0 3 1 * 0") <= 7.0 * 24.0);
    }

    #[test]
    fn what_it_cannot_read_is_none() {
        assert!(longest_gap("0 3 L * *").is_none());
        assert!(longest_gap("0 3 * * 5#2").is_none());
        assert!(longest_gap("0 3 * *").is_none());
        assert!(longest_gap("99 3 * * *").is_none());
    }
}
