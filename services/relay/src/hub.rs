//! The session broker: which sessions are open, which agent link carries each, where each
//! waits in its queue, and which consoles must hear about a change.
//!
//! Every change is written to the database first, then applied in memory and announced; on
//! start the open sessions are loaded back from the database, so a restart loses nothing a
//! person would miss (agents reconnect with their resume token, consoles get a snapshot).
//!
//! A customer learns their place in the queue when they enter it; when someone ahead leaves,
//! the new places of that queue go out together a moment later ([`POSITION_DELAY`]), so a
//! burst of accepted sessions costs each waiting customer one message, not one per departure.
//!
//! Who sees a session follows its queue: `general` every representative, `personal` its
//! owner, `team` the members of that team (kept here from `user_teams`, and updated when an
//! administrator changes someone's teams), and administrators everything. When someone's
//! teams change, their open consoles get a fresh snapshot at once.
//!
//! Each open session has a screen-sharing [`Room`] (grants, viewers, frame routing). Locks
//! are taken in one order only: the hub's session map, then a room, then a viewer's queue.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use lifeline_proto::agent::{Party, RelayToAgent, SessionState};
use lifeline_proto::console::{QueueEntry, QueueKind, RelayToConsole};
use lifeline_proto::remote::{GrantState, Permission};
use tokio::sync::{Notify, broadcast, mpsc};

use crate::db::{Db, DbError, SessionRow, User, now_ms};
use crate::view::Room;

/// Messages queued for one agent link.
pub type AgentTx = mpsc::Sender<RelayToAgent>;

/// Depth of an agent's outgoing queue; a link that falls this far behind is dropped and
/// the agent resumes (control messages are never silently discarded).
pub const AGENT_QUEUE: usize = 256;

/// Who may see an announcement on the console socket.
#[derive(Debug, Clone)]
pub struct Audience {
    pub queue: QueueKind,
    pub owner_id: Option<i64>,
    /// The team of a team queue.
    pub team: Option<String>,
    pub accepted_by: Option<i64>,
    /// Chat and presence go to the accepting representative only; queue changes to
    /// everyone who can see the queue.
    pub only_accepting_rep: bool,
    /// For one user only (a snapshot made for them), whatever their role.
    pub only_user: Option<i64>,
}

impl Audience {
    /// Whether `user`, a member of `teams`, may hear this.
    pub fn admits(&self, user: &User, teams: &[String]) -> bool {
        if let Some(only) = self.only_user {
            return only == user.id;
        }
        if user.role == "admin" {
            return true;
        }
        if self.accepted_by == Some(user.id) {
            return true;
        }
        if self.only_accepting_rep {
            return false;
        }
        match self.queue {
            QueueKind::General => true,
            QueueKind::Personal => self.owner_id == Some(user.id),
            QueueKind::Team => self
                .team
                .as_deref()
                .is_some_and(|team| teams.iter().any(|t| t == team)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Announcement {
    pub audience: Audience,
    pub event: Arc<RelayToConsole>,
}

#[derive(Debug)]
struct Live {
    row: SessionRow,
    owner_name: Option<String>,
    accepted_by_name: Option<String>,
    agent: Option<(u64, AgentTx)>,
    last_position: Option<u32>,
    room: Arc<Room>,
}

impl Live {
    fn queue_kind(&self) -> QueueKind {
        match self.row.queue.as_str() {
            "personal" => QueueKind::Personal,
            "team" => QueueKind::Team,
            _ => QueueKind::General,
        }
    }

    fn state(&self) -> SessionState {
        match self.row.state.as_str() {
            "terms" => SessionState::Terms,
            "waiting" => SessionState::Waiting,
            "active" => SessionState::Active,
            _ => SessionState::Ended,
        }
    }

    fn entry(&self) -> QueueEntry {
        QueueEntry {
            session_id: self.row.id.clone(),
            queue: self.queue_kind(),
            owner: self.owner_name.clone(),
            team: self.row.team.clone(),
            customer_name: self.row.customer_name.clone(),
            computer: self.row.computer.clone(),
            platform: self.row.platform.clone(),
            state: self.state(),
            waiting_since: self.row.queued_at.unwrap_or(self.row.created_at),
            accepted_by: self.accepted_by_name.clone(),
        }
    }

    fn audience(&self, only_accepting_rep: bool) -> Audience {
        Audience {
            queue: self.queue_kind(),
            owner_id: self.row.owner_id,
            team: self.row.team.clone(),
            accepted_by: self.row.accepted_by,
            only_accepting_rep,
            only_user: None,
        }
    }

    /// Sessions compete for a place only with those of the same queue.
    fn queue_key(&self) -> QueueKey {
        (self.queue_kind(), self.row.owner_id, self.row.team.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("there is no open session with this id")]
    NotFound,
    #[error("you may not act on this session")]
    Forbidden,
    #[error("another representative accepted this session first")]
    AlreadyTaken,
    #[error("the session has not reached the queue yet or has already been accepted")]
    WrongState,
    #[error("the customer's client is not connected right now; try again when it is back")]
    Offline,
    #[error("ask the customer to let you see the screen first")]
    NeedsView,
    #[error("the customer has already allowed this")]
    AlreadyGranted,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Live counts for status pages.
#[derive(Debug, Default)]
pub struct Counters {
    pub consoles: AtomicU64,
    pub agents: AtomicU64,
    /// Connected jump clients ([`crate::jump`]).
    pub jump_clients: AtomicU64,
}

/// How long new queue places wait after someone ahead left (more may leave meanwhile).
pub const POSITION_DELAY: Duration = Duration::from_millis(250);

/// A queue: its kind, the owner of a personal one, the team of a team one.
type QueueKey = (QueueKind, Option<i64>, Option<String>);

#[derive(Debug)]
pub struct Hub {
    db: Db,
    sessions: Mutex<HashMap<String, Live>>,
    /// Queues whose places changed since they were last sent.
    moved_queues: Mutex<HashSet<QueueKey>>,
    queues_moved: Arc<Notify>,
    announce: broadcast::Sender<Announcement>,
    link_gen: AtomicU64,
    pub counters: Counters,
    /// user id → number of console sockets (the portal lists reps who are online).
    online_reps: Mutex<HashMap<i64, u32>>,
    /// user id → the teams the user belongs to (`user_teams`).
    teams: Mutex<HashMap<i64, Arc<[String]>>>,
    /// File transfers in flight, per session.
    pub files: crate::files::FileHub,
    /// System-information reports being waited for.
    pub sysinfo: crate::tools::SysInfoRequests,
    /// Command shells, per session.
    pub shells: crate::shell::Shells,
}

impl Hub {
    /// Loads the open sessions from the database.
    pub async fn load(db: Db) -> Result<Arc<Self>, DbError> {
        let mut sessions = HashMap::new();
        let mut names: HashMap<i64, String> = HashMap::new();
        for row in db.open_sessions().await? {
            let mut name_of = async |id: Option<i64>| -> Result<Option<String>, DbError> {
                let Some(id) = id else { return Ok(None) };
                if let Some(n) = names.get(&id) {
                    return Ok(Some(n.clone()));
                }
                let n = db.user_by_id(id).await?.map(|u| u.display_name);
                if let Some(n) = &n {
                    names.insert(id, n.clone());
                }
                Ok(n)
            };
            let owner_name = name_of(row.owner_id).await?;
            let accepted_by_name = name_of(row.accepted_by).await?;
            let totals = db.stream_totals(&row.id).await?;
            let grants = crate::view::grants_from_events(&db.events(&row.id).await?);
            let room = Arc::new(Room::new(&row.id, totals.as_ref(), grants));
            sessions.insert(
                row.id.clone(),
                Live {
                    row,
                    owner_name,
                    accepted_by_name,
                    agent: None,
                    last_position: None,
                    room,
                },
            );
        }
        let mut teams: HashMap<i64, Vec<String>> = HashMap::new();
        for (user_id, team) in db.all_user_teams().await? {
            teams.entry(user_id).or_default().push(team);
        }
        let teams = teams.into_iter().map(|(u, t)| (u, t.into())).collect();
        let (announce, _) = broadcast::channel(8192);
        let hub = Arc::new(Hub {
            db,
            sessions: Mutex::new(sessions),
            moved_queues: Mutex::default(),
            queues_moved: Arc::default(),
            announce,
            link_gen: AtomicU64::new(1),
            counters: Counters::default(),
            online_reps: Mutex::new(HashMap::new()),
            teams: Mutex::new(teams),
            shells: Default::default(),
            files: crate::files::FileHub::default(),
            sysinfo: Default::default(),
        });
        tokio::spawn(send_moved_places(
            Arc::downgrade(&hub),
            hub.queues_moved.clone(),
        ));
        Ok(hub)
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Announcement> {
        self.announce.subscribe()
    }

    fn announce(&self, audience: Audience, event: RelayToConsole) {
        // No subscribers is fine.
        let _ = self.announce.send(Announcement {
            audience,
            event: Arc::new(event),
        });
    }

    /// The teams `user_id` belongs to, as last stored.
    pub fn teams_of(&self, user_id: i64) -> Arc<[String]> {
        self.teams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&user_id)
            .cloned()
            .unwrap_or_else(|| Arc::new([]))
    }

    /// Records a user's new teams (already stored in the database); their open consoles get
    /// a fresh snapshot with the queues they now see.
    pub fn set_teams(&self, user: &User, teams: &[String]) {
        {
            let mut m = self.teams.lock().unwrap_or_else(|e| e.into_inner());
            if teams.is_empty() {
                m.remove(&user.id);
            } else {
                m.insert(user.id, teams.into());
            }
        }
        let audience = Audience {
            queue: QueueKind::Personal,
            owner_id: Some(user.id),
            team: None,
            accepted_by: None,
            only_accepting_rep: true,
            only_user: Some(user.id),
        };
        self.announce(
            audience,
            RelayToConsole::Snapshot {
                entries: self.snapshot(user),
            },
        );
    }

    /// Whether `user` may hear an announcement.
    pub fn admits(&self, audience: &Audience, user: &User) -> bool {
        audience.admits(user, &self.teams_of(user.id))
    }

    /// What `user` sees right now.
    pub fn snapshot(&self, user: &User) -> Vec<QueueEntry> {
        let teams = self.teams_of(user.id);
        let mut entries: Vec<QueueEntry> = self
            .lock()
            .values()
            .filter(|l| matches!(l.state(), SessionState::Waiting | SessionState::Active))
            .filter(|l| l.audience(false).admits(user, &teams))
            .filter(|l| {
                l.state() == SessionState::Waiting
                    || l.row.accepted_by == Some(user.id)
                    || user.role == "admin"
            })
            .map(Live::entry)
            .collect();
        entries.sort_by_key(|e| e.waiting_since);
        entries
    }

    /// Checks the health of the broker (for the watchdog).
    pub fn healthy(&self) -> bool {
        drop(self.lock());
        true
    }

    pub fn session_count(&self) -> usize {
        self.lock().len()
    }

    // ---- representatives online ---------------------------------------------------------

    pub fn rep_online(&self, user_id: i64, delta: i32) {
        let mut m = self.online_reps.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(user_id).or_insert(0);
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            m.remove(&user_id);
        }
    }

    pub fn online_rep_ids(&self) -> Vec<i64> {
        self.online_reps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect()
    }

    // ---- agent side ---------------------------------------------------------------------

    /// Registers a new session (already in the database) and its first agent link.
    pub fn add_session(&self, row: SessionRow, owner_name: Option<String>, tx: AgentTx) -> u64 {
        let gen_ = self.link_gen.fetch_add(1, Ordering::Relaxed);
        let room = Arc::new(Room::new(&row.id, None, Default::default()));
        room.set_agent(Some(tx.clone()));
        self.lock().insert(
            row.id.clone(),
            Live {
                row,
                owner_name,
                accepted_by_name: None,
                agent: Some((gen_, tx)),
                last_position: None,
                room,
            },
        );
        gen_
    }

    /// Registers a session a representative opened with a jump ([`crate::jump`]): already
    /// accepted by `rep`, no agent link until the jump client's session agent connects.
    pub fn add_jump_session(&self, row: SessionRow, rep: &User) {
        let room = Arc::new(Room::new(&row.id, None, Default::default()));
        let live = Live {
            row,
            owner_name: Some(rep.display_name.clone()),
            accepted_by_name: Some(rep.display_name.clone()),
            agent: None,
            last_position: None,
            room,
        };
        let (audience, entry) = (live.audience(true), live.entry());
        self.lock().insert(entry.session_id.clone(), live);
        self.announce(audience, RelayToConsole::Upsert { entry });
    }

    /// The resume token of a jump session's agent, known once it connected.
    pub fn set_resume_hash(&self, session_id: &str, hash: &str) {
        if let Some(live) = self.lock().get_mut(session_id) {
            live.row.resume_token_hash = hash.to_string();
        }
    }

    /// Attaches a reconnected agent link; returns its generation and what to tell it.
    pub fn attach_agent(
        &self,
        session_id: &str,
        token_ok: impl FnOnce(&str) -> bool,
        tx: AgentTx,
    ) -> Option<(u64, SessionState, Option<String>, Option<u32>)> {
        let gen_ = self.link_gen.fetch_add(1, Ordering::Relaxed);
        let mut s = self.lock();
        let live = s.get_mut(session_id)?;
        if !token_ok(&live.row.resume_token_hash) {
            return None;
        }
        live.room.set_agent(Some(tx.clone()));
        live.agent = Some((gen_, tx));
        let state = live.state();
        let position = if state == SessionState::Waiting {
            live.last_position
        } else {
            None
        };
        let out = (gen_, state, live.accepted_by_name.clone(), position);
        let audience = live.audience(true);
        drop(s);
        self.announce(
            audience,
            RelayToConsole::Presence {
                session_id: session_id.to_string(),
                online: true,
            },
        );
        Some(out)
    }

    /// Forgets an agent link if it is still the current one.
    pub async fn detach_agent(&self, session_id: &str, gen_: u64) {
        let audience = {
            let mut s = self.lock();
            let Some(live) = s.get_mut(session_id) else {
                return;
            };
            if live.agent.as_ref().map(|(g, _)| *g) != Some(gen_) {
                return;
            }
            live.agent = None;
            live.room.set_agent(None);
            live.audience(true)
        };
        if let Err(e) = self
            .db
            .add_event(session_id, "customer_link_lost", "")
            .await
        {
            tracing::warn!(error = %e, "cannot record link loss");
        }
        self.announce(
            audience,
            RelayToConsole::Presence {
                session_id: session_id.to_string(),
                online: false,
            },
        );
    }

    /// The stored row of an open session and the name of the representative who accepted
    /// it, as kept in memory (the database holds the same); `None` once it ended.
    pub fn row(&self, session_id: &str) -> Option<(SessionRow, Option<String>)> {
        self.lock()
            .get(session_id)
            .map(|l| (l.row.clone(), l.accepted_by_name.clone()))
    }

    /// Where an open session stands; `None` once it ended.
    pub fn state_of(&self, session_id: &str) -> Option<SessionState> {
        self.lock().get(session_id).map(Live::state)
    }

    pub fn is_online(&self, session_id: &str) -> bool {
        self.lock()
            .get(session_id)
            .is_some_and(|l| l.agent.is_some())
    }

    /// The customer accepted the terms: the session enters its queue.
    pub async fn enqueue(&self, session_id: &str) -> Result<(), HubError> {
        let now = now_ms();
        {
            let s = self.lock();
            let live = s.get(session_id).ok_or(HubError::NotFound)?;
            if live.state() != SessionState::Terms {
                return Ok(());
            }
        }
        self.db.set_queued(session_id, now).await?;
        self.db.add_event(session_id, "terms_accepted", "").await?;
        let (audience, entry, key) = {
            let mut s = self.lock();
            let live = s.get_mut(session_id).ok_or(HubError::NotFound)?;
            live.row.state = "waiting".into();
            live.row.queued_at = Some(now);
            (live.audience(false), live.entry(), live.queue_key())
        };
        self.announce(audience, RelayToConsole::Upsert { entry });
        self.update_positions(key);
        Ok(())
    }

    /// Someone left a queue: its places go out after [`POSITION_DELAY`].
    fn queue_moved(&self, key: QueueKey) {
        self.moved_queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        self.queues_moved.notify_one();
    }

    /// Sends each waiting agent of one queue its position when it changed.
    fn update_positions(&self, key: QueueKey) {
        let mut s = self.lock();
        let mut waiting: Vec<(i64, String)> = s
            .values()
            .filter(|l| l.state() == SessionState::Waiting && l.queue_key() == key)
            .map(|l| (l.row.queued_at.unwrap_or(0), l.row.id.clone()))
            .collect();
        waiting.sort();
        for (i, (_, id)) in waiting.iter().enumerate() {
            let position = i as u32 + 1;
            if let Some(live) = s.get_mut(id)
                && live.last_position != Some(position)
            {
                live.last_position = Some(position);
                if let Some((_, tx)) = &live.agent {
                    let _ = tx.try_send(RelayToAgent::Queue { position });
                }
            }
        }
    }

    /// Stores and forwards a customer's chat line.
    pub async fn customer_chat(&self, session_id: &str, text: &str) -> Result<(), HubError> {
        let (name, audience) = {
            let s = self.lock();
            let live = s.get(session_id).ok_or(HubError::NotFound)?;
            (live.row.customer_name.clone(), live.audience(true))
        };
        let at = now_ms();
        self.db
            .add_message(session_id, "customer", &name, text, at)
            .await?;
        self.announce(
            audience,
            RelayToConsole::Chat {
                session_id: session_id.to_string(),
                from: Party::Customer,
                name,
                text: text.to_string(),
                at,
            },
        );
        Ok(())
    }

    // ---- representative side ------------------------------------------------------------

    /// Whether `user` may see this session (queue visibility, or it is theirs).
    pub fn visible_to(&self, session_id: &str, user: &User) -> Option<bool> {
        let teams = self.teams_of(user.id);
        self.lock()
            .get(session_id)
            .map(|l| l.audience(false).admits(user, &teams))
    }

    pub async fn accept(&self, session_id: &str, user: &User) -> Result<(), HubError> {
        let teams = self.teams_of(user.id);
        {
            let s = self.lock();
            let live = s.get(session_id).ok_or(HubError::NotFound)?;
            if !live.audience(false).admits(user, &teams) {
                return Err(HubError::Forbidden);
            }
            if live.state() != SessionState::Waiting {
                return Err(if live.state() == SessionState::Active {
                    HubError::AlreadyTaken
                } else {
                    HubError::WrongState
                });
            }
        }
        let now = now_ms();
        if !self.db.set_accepted(session_id, user.id, now).await? {
            return Err(HubError::AlreadyTaken);
        }
        self.db
            .add_event(session_id, "accepted", &user.display_name)
            .await?;
        let (before, after, entry, key) = {
            let mut s = self.lock();
            let live = s.get_mut(session_id).ok_or(HubError::NotFound)?;
            let before = live.audience(false);
            live.row.state = "active".into();
            live.row.accepted_at = Some(now);
            live.row.accepted_by = Some(user.id);
            live.accepted_by_name = Some(user.display_name.clone());
            live.last_position = None;
            if let Some((_, tx)) = &live.agent {
                let _ = tx.try_send(RelayToAgent::RepJoined {
                    name: user.display_name.clone(),
                });
            }
            (before, live.audience(true), live.entry(), live.queue_key())
        };
        // Gone from everybody's queue, now a session of the accepting representative.
        self.announce(
            before,
            RelayToConsole::Remove {
                session_id: session_id.to_string(),
            },
        );
        self.announce(after, RelayToConsole::Upsert { entry });
        self.queue_moved(key);
        Ok(())
    }

    fn require_owner(&self, session_id: &str, user: &User) -> Result<Audience, HubError> {
        let s = self.lock();
        let live = s.get(session_id).ok_or(HubError::NotFound)?;
        if live.state() != SessionState::Active {
            return Err(HubError::WrongState);
        }
        if live.row.accepted_by != Some(user.id) && user.role != "admin" {
            return Err(HubError::Forbidden);
        }
        Ok(live.audience(true))
    }

    pub async fn rep_chat(
        &self,
        session_id: &str,
        user: &User,
        text: &str,
    ) -> Result<(i64, i64), HubError> {
        let audience = self.require_owner(session_id, user)?;
        let at = now_ms();
        let id = self
            .db
            .add_message(session_id, "rep", &user.display_name, text, at)
            .await?;
        if let Some(tx) = self.agent_tx(session_id) {
            let _ = tx.try_send(RelayToAgent::Chat {
                from: Party::Rep,
                name: user.display_name.clone(),
                text: text.to_string(),
                at,
            });
        }
        self.announce(
            audience,
            RelayToConsole::Chat {
                session_id: session_id.to_string(),
                from: Party::Rep,
                name: user.display_name.clone(),
                text: text.to_string(),
                at,
            },
        );
        Ok((id, at))
    }

    fn agent_tx(&self, session_id: &str) -> Option<AgentTx> {
        self.lock()
            .get(session_id)
            .and_then(|l| l.agent.as_ref().map(|(_, tx)| tx.clone()))
    }

    /// Queues a message for a session's agent without waiting.
    pub fn send_to_agent(&self, session_id: &str, msg: RelayToAgent) -> Result<(), HubError> {
        let tx = self.agent_tx(session_id).ok_or(HubError::Offline)?;
        tx.try_send(msg).map_err(|_| HubError::Offline)
    }

    /// A representative ends a session (theirs, or one waiting in a queue they see).
    pub async fn rep_end(&self, session_id: &str, user: &User) -> Result<(), HubError> {
        let teams = self.teams_of(user.id);
        {
            let s = self.lock();
            let live = s.get(session_id).ok_or(HubError::NotFound)?;
            let mine = live.row.accepted_by == Some(user.id) || user.role == "admin";
            let waiting_visible =
                live.state() == SessionState::Waiting && live.audience(false).admits(user, &teams);
            if !mine && !waiting_visible {
                return Err(HubError::Forbidden);
            }
        }
        self.end(
            session_id,
            Party::Rep,
            &format!("ended by {}", user.display_name),
        )
        .await
    }

    /// Ends a session for everyone; idempotent.
    pub async fn end(&self, session_id: &str, by: Party, reason: &str) -> Result<(), HubError> {
        let by_s = match by {
            Party::Customer => "customer",
            Party::Rep => "rep",
            Party::System => "system",
        };
        let now = now_ms();
        let changed = self.db.set_ended(session_id, by_s, reason, now).await?;
        let Some(live) = self.lock().remove(session_id) else {
            return if changed {
                Ok(())
            } else {
                Err(HubError::NotFound)
            };
        };
        self.db.add_event(session_id, "ended", reason).await?;
        live.room.end(reason);
        self.files.forget(session_id);
        self.db
            .save_stream_totals(session_id, &live.room.counters.totals())
            .await?;
        if let Some((_, tx)) = &live.agent {
            let _ = tx.try_send(RelayToAgent::Ended {
                by,
                reason: reason.to_string(),
            });
        }
        let mut all = live.audience(false);
        all.accepted_by = live.row.accepted_by;
        self.announce(
            all.clone(),
            RelayToConsole::Ended {
                session_id: session_id.to_string(),
                by,
                reason: reason.to_string(),
            },
        );
        self.announce(
            all,
            RelayToConsole::Remove {
                session_id: session_id.to_string(),
            },
        );
        if live.state() == SessionState::Waiting {
            self.queue_moved(live.queue_key());
        }
        Ok(())
    }

    // ---- screen sharing -------------------------------------------------------------------

    /// The screen-sharing room of an open session.
    pub fn room(&self, session_id: &str) -> Option<Arc<Room>> {
        self.lock().get(session_id).map(|l| l.room.clone())
    }

    /// The room of a session `user` may watch: the representative who accepted it, or an
    /// admin, while it is active.
    pub fn viewer_room(&self, session_id: &str, user: &User) -> Result<Arc<Room>, HubError> {
        self.require_owner(session_id, user)?;
        self.room(session_id).ok_or(HubError::NotFound)
    }

    /// A representative asks the customer for a permission: recorded, announced, and passed
    /// to the agent.
    pub async fn request_permission(
        &self,
        session_id: &str,
        user: &User,
        permission: Permission,
    ) -> Result<GrantState, HubError> {
        let audience = self.require_owner(session_id, user)?;
        let (room, tx) = {
            let s = self.lock();
            let live = s.get(session_id).ok_or(HubError::NotFound)?;
            let tx = live.agent.as_ref().map(|(_, tx)| tx.clone());
            (live.room.clone(), tx.ok_or(HubError::Offline)?)
        };
        if room.grant(permission) == Some(GrantState::Granted) {
            return Err(HubError::AlreadyGranted);
        }
        if permission == Permission::Control
            && room.grant(Permission::View) != Some(GrantState::Granted)
        {
            return Err(HubError::NeedsView);
        }
        self.db
            .add_event(
                session_id,
                crate::view::event_kind(GrantState::Requested),
                &format!("{}, asked by {}", permission.as_str(), user.display_name),
            )
            .await?;
        room.set_grant(permission, GrantState::Requested);
        self.announce(
            audience,
            RelayToConsole::Permission {
                session_id: session_id.to_string(),
                permission,
                state: GrantState::Requested,
            },
        );
        let _ = tx.try_send(RelayToAgent::PermissionRequest {
            permission,
            rep: user.display_name.clone(),
        });
        Ok(GrantState::Requested)
    }

    /// The agent's answer to a request, a revocation, or a grant re-reported after a
    /// reconnection.
    pub async fn agent_permission(
        &self,
        session_id: &str,
        permission: Permission,
        granted: bool,
    ) -> Result<GrantState, HubError> {
        let (room, audience) = {
            let s = self.lock();
            let live = s.get(session_id).ok_or(HubError::NotFound)?;
            (live.room.clone(), live.audience(true))
        };
        let before = room.grant(permission);
        let state = match (granted, before) {
            (true, _) => GrantState::Granted,
            (false, Some(GrantState::Granted)) => GrantState::Revoked,
            (false, Some(GrantState::Revoked)) => GrantState::Revoked,
            (false, _) => GrantState::Denied,
        };
        if before == Some(state) {
            return Ok(state);
        }
        self.db
            .add_event(
                session_id,
                crate::view::event_kind(state),
                permission.as_str(),
            )
            .await?;
        room.set_grant(permission, state);
        self.announce(
            audience,
            RelayToConsole::Permission {
                session_id: session_id.to_string(),
                permission,
                state,
            },
        );
        Ok(state)
    }

    /// Writes the screen-sharing counters of every open session that changed since the last
    /// call (through the writer, without waiting).
    pub async fn save_counters(&self) {
        let rooms: Vec<Arc<Room>> = self.lock().values().map(|l| l.room.clone()).collect();
        for room in rooms {
            if let Some(t) = room.counters.take_changed()
                && let Err(e) = self.db.save_stream_totals(&room.session_id, &t).await
            {
                tracing::warn!(error = %e, "cannot save screen-sharing counters");
            }
        }
    }

    /// Ends sessions whose customer has been gone longer than allowed.
    pub async fn reap(
        &self,
        waiting_grace_ms: i64,
        active_grace_ms: i64,
        offline_since: &Mutex<HashMap<String, i64>>,
    ) {
        let now = now_ms();
        let mut to_end = Vec::new();
        {
            let s = self.lock();
            let mut off = offline_since.lock().unwrap_or_else(|e| e.into_inner());
            off.retain(|id, _| s.get(id).is_some_and(|l| l.agent.is_none()));
            for (id, live) in s.iter() {
                if live.agent.is_some() {
                    continue;
                }
                let since = *off.entry(id.clone()).or_insert(now);
                let grace = if live.state() == SessionState::Active {
                    active_grace_ms
                } else {
                    waiting_grace_ms
                };
                if now - since > grace {
                    to_end.push(id.clone());
                }
            }
        }
        for id in to_end {
            if let Err(e) = self
                .end(
                    &id,
                    Party::System,
                    "the customer's client disconnected and did not come back",
                )
                .await
            {
                tracing::warn!(session = %id, error = %e, "cannot end an abandoned session");
            }
        }
    }
}

/// Sends the new places of the queues that moved, at most every [`POSITION_DELAY`], for as
/// long as the hub lives.
async fn send_moved_places(hub: Weak<Hub>, moved: Arc<Notify>) {
    loop {
        moved.notified().await;
        tokio::time::sleep(POSITION_DELAY).await;
        let Some(hub) = hub.upgrade() else { return };
        let keys = std::mem::take(&mut *hub.moved_queues.lock().unwrap_or_else(|e| e.into_inner()));
        for key in keys {
            hub.update_positions(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, role: &str) -> User {
        User::for_test(id, role)
    }

    fn team_queue(team: &str) -> Audience {
        Audience {
            queue: QueueKind::Team,
            owner_id: None,
            team: Some(team.into()),
            accepted_by: None,
            only_accepting_rep: false,
            only_user: None,
        }
    }

    #[test]
    fn team_queues_are_heard_by_members_and_admins_only() {
        let ops = ["ops".to_string()];
        let a = team_queue("ops");
        assert!(a.admits(&user(2, "rep"), &ops));
        assert!(!a.admits(&user(3, "rep"), &[]));
        assert!(!a.admits(&user(3, "rep"), &["opsx".to_string()]));
        assert!(a.admits(&user(1, "admin"), &[]));
        // Once taken, the session is its representative's only.
        let taken = Audience {
            accepted_by: Some(4),
            only_accepting_rep: true,
            ..team_queue("ops")
        };
        assert!(!taken.admits(&user(2, "rep"), &ops));
        assert!(taken.admits(&user(4, "rep"), &[]));
        // A snapshot made for one user goes to nobody else, administrators included.
        let mine = Audience {
            only_user: Some(2),
            ..team_queue("ops")
        };
        assert!(mine.admits(&user(2, "rep"), &[]));
        assert!(!mine.admits(&user(1, "admin"), &[]));
    }
}
