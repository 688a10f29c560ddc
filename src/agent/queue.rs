//! The durable status queue: status messages are appended to
//! `<state>/queue.jsonl` (one JSON object a line) and fsynced before they
//! count as queued; [`Queue::deliver`] posts them in batches of at most
//! [`MAX_BATCH`] and removes a batch only after the server accepted it.
//!
//! Delivery is at least once; storage is exactly once: every message has
//! an idempotency `key`, and the server stores a key once (a message sent
//! again after a crash between the answer and the removal is counted as a
//! duplicate, not stored twice).
//!
//! A crash in the middle of an append leaves a last line without its
//! newline. Such a torn line is ignored, and cut off before the next
//! append, so it never glues onto a good message. A damaged line in the
//! middle (which appends cannot produce) is skipped with a warning rather
//! than blocking the queue forever.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The most messages the server accepts in one `POST /v1/status`.
pub const MAX_BATCH: usize = 1000;

/// The server's limit on a message's text, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Where an assignment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunState {
    Accepted,
    Downloading,
    Downloaded,
    Running,
    Succeeded,
    Failed,
    Retrying,
    RestartPending,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Accepted => "accepted",
            RunState::Downloading => "downloading",
            RunState::Downloaded => "downloaded",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Retrying => "retrying",
            RunState::RestartPending => "restartPending",
        }
    }
}

/// One status message, as `POST /v1/status` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusMessage {
    /// The idempotency key (1–128 characters).
    pub key: String,
    pub advertisement: String,
    pub state: RunState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub message: String,
    /// RFC 3339.
    pub at: String,
}

impl StatusMessage {
    /// A message with key `<run id>/<step>-<state>`: unique per run and step.
    pub fn new(
        run_id: &str,
        step: u32,
        advertisement: &str,
        state: RunState,
        exit_code: Option<i32>,
        message: &str,
        at: jiff::Timestamp,
    ) -> StatusMessage {
        StatusMessage {
            key: format!("{run_id}/{step}-{}", state.as_str()),
            advertisement: advertisement.to_string(),
            state,
            exit_code,
            message: truncate(&storable(message), MAX_MESSAGE_BYTES),
            at: at.to_string(),
        }
    }
}

/// Program output made storable: NUL, which no store holds (PostgreSQL
/// refuses it in text), becomes U+FFFD. Invalid UTF-8 is replaced when
/// the output is read ([`super::run::output_tail`]); other control
/// characters stay — the server stores them and every printer escapes
/// them.
pub fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Why a delivery stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError<E> {
    #[error("the status queue: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Send(E),
}

/// The queue file.
#[derive(Debug, Clone)]
pub struct Queue {
    path: PathBuf,
}

impl Queue {
    pub fn new(path: &Path) -> Queue {
        Queue {
            path: path.to_path_buf(),
        }
    }

    /// Appends messages; when this returns Ok they are on disk (fsync).
    pub fn push(&self, messages: &[StatusMessage]) -> io::Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&self.path)?;
        cut_torn_tail(&mut file)?;
        let mut text = Vec::new();
        for m in messages {
            serde_json::to_writer(&mut text, m).map_err(io::Error::other)?;
            text.push(b'\n');
        }
        file.seek(SeekFrom::End(0))?;
        file.write_all(&text)?;
        file.sync_all()
    }

    /// Every queued message, oldest first. A torn last line is ignored.
    pub fn pending(&self) -> io::Result<Vec<StatusMessage>> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let complete = match bytes.iter().rposition(|b| *b == b'\n') {
            Some(i) => &bytes[..=i],
            None => &[][..],
        };
        let mut out = Vec::new();
        for (i, line) in complete.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice(line) {
                Ok(m) => out.push(m),
                Err(e) => tracing::warn!(
                    line = i + 1,
                    "skipping a damaged line of the status queue: {e}"
                ),
            }
        }
        Ok(out)
    }

    /// Removes the first `n` messages (they were delivered): the rest is
    /// rewritten atomically.
    pub fn remove_first(&self, n: usize) -> io::Result<()> {
        let rest: Vec<StatusMessage> = self.pending()?.into_iter().skip(n).collect();
        let mut text = Vec::new();
        for m in &rest {
            serde_json::to_writer(&mut text, m).map_err(io::Error::other)?;
            text.push(b'\n');
        }
        crate::atomic_file::write(&self.path, &text, 0o600)
    }

    /// Posts every queued message in batches of at most [`MAX_BATCH`];
    /// a batch leaves the queue only after `post` succeeded. Returns how
    /// many were delivered. Stops at the first failure (the rest stays
    /// queued for the next cycle) — except a refusal (`refused` says
    /// which errors are the server refusing the messages themselves,
    /// which sending again cannot change): then the batch is sent one
    /// message at a time, and a message refused alone is dropped with a
    /// warning, so that one bad message never blocks the queue.
    pub async fn deliver<E: std::fmt::Display>(
        &self,
        mut post: impl AsyncFnMut(&[StatusMessage]) -> Result<(), E>,
        refused: impl Fn(&E) -> bool,
    ) -> Result<usize, DeliverError<E>> {
        let mut delivered = 0;
        loop {
            let pending = self.pending()?;
            if pending.is_empty() {
                return Ok(delivered);
            }
            let batch = &pending[..pending.len().min(MAX_BATCH)];
            match post(batch).await {
                Ok(()) => delivered += batch.len(),
                Err(e) if refused(&e) && batch.len() == 1 => drop_refused(&batch[0], &e),
                Err(e) if refused(&e) => {
                    for (i, message) in batch.iter().enumerate() {
                        match post(std::slice::from_ref(message)).await {
                            Ok(()) => delivered += 1,
                            Err(e) if refused(&e) => drop_refused(message, &e),
                            Err(e) => {
                                self.remove_first(i)?;
                                return Err(DeliverError::Send(e));
                            }
                        }
                    }
                }
                Err(e) => return Err(DeliverError::Send(e)),
            }
            self.remove_first(batch.len())?;
        }
    }
}

/// The local record of a message the server refused as invalid.
fn drop_refused(message: &StatusMessage, why: &dyn std::fmt::Display) {
    tracing::warn!(
        key = %message.key,
        advertisement = %message.advertisement,
        state = message.state.as_str(),
        "dropping a status message the server refused (sending it again cannot help): {why}"
    );
}

/// Cuts the file back to its last newline (a crash mid-append).
fn cut_torn_tail(file: &mut fs::File) -> io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut bytes)?;
    let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    file.set_len(keep as u64)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u32) -> StatusMessage {
        StatusMessage::new(
            "run-1",
            n,
            "Adv",
            RunState::Accepted,
            None,
            "",
            jiff::Timestamp::UNIX_EPOCH,
        )
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn messages_survive_a_new_queue_and_leave_only_when_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.jsonl");
        Queue::new(&path).push(&[msg(1), msg(2)]).unwrap();
        // "Restart": a new value over the same file.
        let queue = Queue::new(&path);
        assert_eq!(queue.pending().unwrap(), vec![msg(1), msg(2)]);
        // The server is down: nothing leaves.
        let err = block_on(queue.deliver(async |_| Err::<(), _>("connection refused"), |_| false));
        assert!(matches!(err, Err(DeliverError::Send("connection refused"))));
        assert_eq!(queue.pending().unwrap().len(), 2);
        // The server is back.
        let mut seen = Vec::new();
        let n = block_on(queue.deliver(
            async |batch: &[StatusMessage]| {
                seen.extend_from_slice(batch);
                Ok::<(), &str>(())
            },
            |_| false,
        ))
        .unwrap();
        assert_eq!((n, seen), (2, vec![msg(1), msg(2)]));
        assert!(queue.pending().unwrap().is_empty());
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_cut_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.jsonl");
        let queue = Queue::new(&path);
        queue.push(&[msg(1)]).unwrap();
        // A crash in the middle of appending the second message.
        let full = serde_json::to_string(&msg(2)).unwrap();
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&full.as_bytes()[..full.len() / 2]).unwrap();
        drop(f);
        assert_eq!(queue.pending().unwrap(), vec![msg(1)]);
        queue.push(&[msg(3)]).unwrap();
        assert_eq!(queue.pending().unwrap(), vec![msg(1), msg(3)]);
        // A file holding only a torn line.
        fs::write(&path, b"{\"key\":").unwrap();
        assert!(queue.pending().unwrap().is_empty());
        queue.push(&[msg(4)]).unwrap();
        assert_eq!(queue.pending().unwrap(), vec![msg(4)]);
    }

    #[test]
    fn batches_hold_at_most_a_thousand_messages() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::new(&dir.path().join("queue.jsonl"));
        let all: Vec<_> = (0..2500).map(msg).collect();
        queue.push(&all).unwrap();
        let mut sizes = Vec::new();
        // The second batch fails: the first stays delivered, the rest queued.
        let result = block_on(queue.deliver(
            async |batch: &[StatusMessage]| {
                sizes.push(batch.len());
                if sizes.len() == 2 {
                    Err("timeout")
                } else {
                    Ok(())
                }
            },
            |_| false,
        ));
        assert!(result.is_err());
        assert_eq!(sizes, vec![1000, 1000]);
        let rest = queue.pending().unwrap();
        assert_eq!(rest.len(), 1500);
        assert_eq!(rest[0], msg(1000));
    }

    /// Defect: a message the server refused (a NUL on PostgreSQL) was
    /// sent again forever and blocked every message behind it.
    #[test]
    fn a_message_the_server_refuses_is_dropped_and_the_rest_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::new(&dir.path().join("queue.jsonl"));
        queue.push(&[msg(1), msg(2), msg(3)]).unwrap();
        let bad = msg(2).key;
        let mut stored = Vec::new();
        let n = block_on(queue.deliver(
            async |batch: &[StatusMessage]| {
                if batch.iter().any(|m| m.key == bad) {
                    return Err("400: invalid");
                }
                stored.extend(batch.iter().map(|m| m.key.clone()));
                Ok(())
            },
            |e| e.starts_with("400"),
        ))
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(stored, vec![msg(1).key, msg(3).key]);
        assert!(queue.pending().unwrap().is_empty());

        // A failure that is not a refusal keeps everything queued.
        queue.push(&[msg(4)]).unwrap();
        let err = block_on(queue.deliver(async |_| Err::<(), _>("503"), |e| e.starts_with("400")));
        assert!(err.is_err());
        assert_eq!(queue.pending().unwrap(), vec![msg(4)]);
    }

    #[test]
    fn program_output_with_nul_becomes_a_storable_message() {
        let m = StatusMessage::new(
            "r",
            1,
            "A",
            RunState::Failed,
            Some(1),
            "before\0after\u{1b}[2J",
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert_eq!(m.message, "before\u{FFFD}after\u{1b}[2J");
    }

    #[test]
    fn a_damaged_middle_line_does_not_block_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.jsonl");
        let a = serde_json::to_string(&msg(1)).unwrap();
        let b = serde_json::to_string(&msg(2)).unwrap();
        fs::write(&path, format!("{a}\nnot json\n{b}\n")).unwrap();
        assert_eq!(Queue::new(&path).pending().unwrap(), vec![msg(1), msg(2)]);
    }

    #[test]
    fn keys_are_unique_per_step_and_messages_fit_the_server() {
        let long = "é".repeat(5000);
        let m = StatusMessage::new(
            "r",
            7,
            "A",
            RunState::RestartPending,
            Some(3010),
            &long,
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert_eq!(m.key, "r/7-restartPending");
        assert!(m.message.len() <= MAX_MESSAGE_BYTES);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["state"], "restartPending");
        assert_eq!(json["exitCode"], 3010);
    }
}
