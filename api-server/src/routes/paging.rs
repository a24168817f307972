//! Keyset pagination shared by every list endpoint: records in id order, a page of `limit`,
//! and `next` (the last id of the page) to pass back as `after`. Unlike an offset, the cursor
//! neither skips nor repeats a record when others are added or removed between pages.

use serde::Serialize;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

/// The page size a request asked for, checked.
pub fn limit(requested: Option<i64>) -> ApiResult<i64> {
    let limit = requested.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ))
    }
}

/// Rows to fetch for a page of `limit`: one more, which says whether there is a next page.
pub fn fetch(limit: i64) -> i64 {
    limit + 1
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// A page from up to `fetch(limit)` records in id order.
    pub fn of(mut items: Vec<T>, limit: i64, id: impl Fn(&T) -> Uuid) -> Page<T> {
        let limit = usize::try_from(limit).unwrap_or(0);
        let more = items.len() > limit;
        items.truncate(limit);
        let next = if more {
            items.last().map(|item| id(item).to_string())
        } else {
            None
        };
        Page { items, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_says_next_only_when_a_record_follows() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        let full = Page::of(ids.clone(), 2, |id| *id);
        assert_eq!(full.items, ids[..2]);
        assert_eq!(full.next, Some(ids[1].to_string()));
        let last = Page::of(ids[..2].to_vec(), 2, |id| *id);
        assert_eq!(last.next, None);
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(limit(None).ok(), Some(DEFAULT_LIMIT));
        assert!(limit(Some(0)).is_err() && limit(Some(MAX_LIMIT + 1)).is_err());
    }
}
