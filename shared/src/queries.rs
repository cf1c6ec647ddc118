//! Read-side questions operators ask (the CLI, later the status API): answered from the same
//! stores the pipeline writes, never by a side channel.

use crate::model::Session;
use crate::pipeline::Services;
use crate::ports::StoreError;

/// A source's sessions, newest first, at most `limit`. Every session leaves objects under
/// `sessions/{source}/{stamp}/` from its first listed page on, so the bucket's folders are
/// the index; each is then read from the state table.
pub async fn recent_sessions(
    svc: &Services,
    source_id: &str,
    limit: usize,
) -> Result<Vec<Session>, StoreError> {
    let prefix = crate::keys::sessions_prefix(source_id);
    let mut stamps: Vec<String> = svc
        .objects
        .folders(&prefix)
        .await?
        .into_iter()
        .filter_map(|f| {
            f.strip_prefix(&prefix)
                .map(|s| s.trim_end_matches('/').to_string())
        })
        .collect();
    stamps.sort_unstable_by(|a, b| b.cmp(a));
    let mut sessions = Vec::new();
    for stamp in stamps.into_iter().take(limit) {
        if let Some(session) = svc
            .store
            .get_session(&format!("{source_id}@{stamp}"))
            .await?
        {
            sessions.push(session);
        }
    }
    Ok(sessions)
}
