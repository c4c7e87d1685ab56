//! Hold lifecycles for generated streams: a hold and what closes it, adjacent in the stream and
//! under the hold's Kafka key (so in one partition, in this order), each message with its
//! expected outcome.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;

use super::{Expected, Message};
use crate::domain::PostingRequest;

/// An `expires_at` long past: the reporter expires such a hold as soon as it is committed.
const EXPIRED: &str = "2026-01-01T00:00:00Z";

/// One hold's life, from a valid request `base`: the hold reserves twice `base`'s amounts, and is
/// posted in full, posted in part (`base`'s amounts), voided, posted and then voided too late,
/// left open, or (with `expiring`) left to expire.
pub(super) fn life(base: PostingRequest, rng: &mut ChaCha8Rng, expiring: bool) -> Vec<Message> {
    let key = base.idempotency_key.clone();
    let mut hold = base.clone();
    hold.kind = Some("PENDING".into());
    for line in &mut hold.lines {
        let amount: Decimal = line.amount.parse().expect("generated amounts parse");
        line.amount = (amount * Decimal::TWO).to_string();
    }
    let closing = |suffix: &str, kind: &str, lines| PostingRequest {
        idempotency_key: format!("{key}-{suffix}"),
        kind: Some(kind.into()),
        pending_id: Some(key.clone()),
        lines,
        ..base.clone()
    };
    let message = |request, expected| Message {
        key: key.clone(),
        request: Some(request),
        raw: None,
        expected,
    };
    let kind = rng.gen_range(0..if expiring { 6 } else { 5 });
    if kind == 5 {
        hold.expires_at = Some(EXPIRED.into());
    }
    let mut out = vec![message(hold, Expected::Held { expires: kind == 5 })];
    let post = || {
        message(
            closing("post", "POST_PENDING", Vec::new()),
            Expected::Posted,
        )
    };
    match kind {
        0 => out.push(post()),
        1 => out.push(message(
            closing("part", "POST_PENDING", base.lines.clone()),
            Expected::Posted,
        )),
        2 => out.push(message(
            closing("void", "VOID_PENDING", Vec::new()),
            Expected::Released,
        )),
        3 => out.extend([
            post(),
            message(
                closing("late", "VOID_PENDING", Vec::new()),
                Expected::Rejected("HOLD_ALREADY_POSTED"),
            ),
        ]),
        _ => {} // open, or left to expire
    }
    out
}
