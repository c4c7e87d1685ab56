//! Cursor pagination: a page of items, the opaque cursor of the next one, and the positions
//! the walk is fixed to (`store/history.rs` says why that keeps pages stable).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::errors::{ApiError, ErrorCode};
use crate::store::history::Position;

/// Items per page when a request does not say.
const DEFAULT_LIMIT: i64 = 100;
/// The largest page a request may ask for.
pub const MAX_LIMIT: i64 = 1_000;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "bounded_limit")]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
}

/// Refuses an out-of-range page size while the query is parsed, before any wait.
fn bounded_limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<i64>::deserialize(d)? {
        Some(n) if !(1..=MAX_LIMIT).contains(&n) => Err(serde::de::Error::custom(format!(
            "limit must be between 1 and {MAX_LIMIT}, not {n}"
        ))),
        n => Ok(n),
    }
}

impl PageParams {
    /// The page size, refused when out of range.
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit.unwrap_or(DEFAULT_LIMIT) {
            n @ 1..=MAX_LIMIT => Ok(n),
            n => Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_LIMIT}, not {n}"
            ))),
        }
    }
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// The positions this walk is fixed to: it lists what came from offsets below them. A walk
    /// begun later lists what arrived since.
    pub walk: Vec<Position>,
    /// The positions the ledger had applied when this page was read.
    pub applied: Vec<Position>,
}

/// What a cursor carries: which list it belongs to, the walk's positions and the last key.
#[derive(Serialize, Deserialize)]
struct Cursor<K> {
    list: String,
    walk: Vec<Position>,
    after: K,
}

/// The cursor after `last` in a walk of `list` fixed to `walk`: hex-encoded JSON, opaque to
/// clients (its shape may change; only cursors handed out are accepted).
pub fn encode<K: Serialize>(list: &str, walk: &[Position], last: &K) -> String {
    let cursor = Cursor {
        list: list.to_string(),
        walk: walk.to_vec(),
        after: last,
    };
    hex::encode(serde_json::to_vec(&cursor).expect("cursors serialize"))
}

/// The walk and last key of a cursor of `list`.
pub fn decode<K: DeserializeOwned>(list: &str, text: &str) -> Result<(Vec<Position>, K), ApiError> {
    let bad = |why: &str| ApiError::new(ErrorCode::BadCursor, format!("cursor: {why}"));
    let bytes = hex::decode(text).map_err(|_| bad("not a cursor this API handed out"))?;
    let cursor: Cursor<K> =
        serde_json::from_slice(&bytes).map_err(|_| bad("not a cursor this API handed out"))?;
    if cursor.list != list {
        return Err(bad(&format!("it belongs to {}, not {list}", cursor.list)));
    }
    Ok((cursor.walk, cursor.after))
}

/// The walk to read: the cursor's, or for a first page the positions applied now.
pub fn walk_of<K: DeserializeOwned>(
    list: &str,
    params: &PageParams,
    applied: &[Position],
) -> Result<(Vec<Position>, Option<K>), ApiError> {
    match &params.cursor {
        Some(text) => decode(list, text).map(|(walk, after)| (walk, Some(after))),
        None => Ok((applied.to_vec(), None)),
    }
}

/// A page from up to `limit + 1` rows read: the extra row only says that more follow.
pub fn page<T: ToSchema, K: Serialize>(
    list: &str,
    mut rows: Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> K,
    walk: Vec<Position>,
    applied: Vec<Position>,
) -> Page<T> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = match (more, rows.last()) {
        (true, Some(last)) => Some(encode(list, &walk, &key(last))),
        _ => None,
    };
    Page {
        items: rows,
        next_cursor,
        walk,
        applied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk() -> Vec<Position> {
        vec![Position {
            topic: "postings".into(),
            partition: 0,
            next_offset: 42,
        }]
    }

    #[test]
    fn a_cursor_comes_back_as_it_went_out_for_its_own_list_only() {
        let text = encode("entries", &walk(), &("2026-01-01", 7));
        let (w, after): (Vec<Position>, (String, i32)) = decode("entries", &text).unwrap();
        assert_eq!((w, after), (walk(), ("2026-01-01".to_string(), 7)));
        let e = decode::<(String, i32)>("rejections", &text).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadCursor);
        for junk in ["", "zz", "7b7d", &hex::encode("{\"list\":\"entries\"}")] {
            let e = decode::<(String, i32)>("entries", junk).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadCursor, "{junk:?}");
        }
    }

    #[test]
    fn the_last_page_has_no_cursor_and_others_point_past_their_last_item() {
        #[derive(utoipa::ToSchema)]
        struct Item(i32);
        let rows = |n: i32| (1..=n).map(Item).collect::<Vec<_>>();
        let p = page("l", rows(3), 2, |i| i.0, walk(), vec![]);
        assert_eq!(p.items.len(), 2);
        let (_, after): (Vec<Position>, i32) =
            decode("l", p.next_cursor.as_ref().unwrap()).unwrap();
        assert_eq!(after, 2);
        assert!(page("l", rows(2), 2, |i| i.0, walk(), vec![])
            .next_cursor
            .is_none());
        assert!(page("l", rows(0), 2, |i| i.0, walk(), vec![])
            .next_cursor
            .is_none());
    }

    #[test]
    fn page_sizes_are_bounded() {
        let with = |limit| PageParams {
            limit: Some(limit),
            cursor: None,
        };
        assert_eq!(with(1).limit().unwrap(), 1);
        assert_eq!(with(MAX_LIMIT).limit().unwrap(), MAX_LIMIT);
        assert!(with(0).limit().is_err());
        assert!(with(MAX_LIMIT + 1).limit().is_err());
        assert_eq!(PageParams::default().limit().unwrap(), 100);
    }
}
