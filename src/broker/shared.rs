//! Shared subscriptions (FEATURES.md §4): `$share/<group>/<filter>` and `$queue/<filter>` (group
//! `$queue`). Each group whose filter matches a topic gets one copy, which exactly one member
//! receives.
//!
//! Membership is replicated like the route table: every shard keeps every group's member list,
//! kept current by [`MeshMsg::SharedAdd`] / [`MeshMsg::SharedDel`] broadcasts from the members'
//! home shards (a SUBACK is held until the other shards have applied them, as for routes). So the
//! publisher's shard picks the member itself and sends the message straight to the member's shard:
//! one hop, one copy per group. Members are sorted by (shard, client slot, generation), the same
//! order on every shard, so `hash_topic` and `hash_clientid` pick the same member whichever shard
//! the publisher is on.
//!
//! Strategy state lives where EMQX keeps it: the `round_robin` counter and the `sticky` pick per
//! publishing client (on its home shard, in [`Picks`]); the `round_robin_per_group` counter per
//! group on each shard (per node in EMQX). Randomness comes from a per-shard generator seeded by
//! `broker.shared_subscription_seed`, so runs can be repeated exactly.
//!
//! When a member's session ends, the QoS 1/2 messages it was given through the group and has not
//! acknowledged (in flight or queued) go to the remaining members, picked by the group's strategy
//! without a publisher (`round_robin` and `sticky` then use the group's own counter and pick,
//! `hash_clientid` hashes the message's publisher id); QoS 0 is not redispatched. A message that
//! reaches a member's shard after the member left is dispatched again from there. With no member
//! left, the message is dropped and counted (`Counters::shared_dropped_no_member`).

use std::sync::Arc;

use ahash::AHashMap;

use super::mesh::{MeshMsg, ShardId, stable_hash};
use super::subscribe::SubOpts;
use super::{Broker, ClientKey};
use crate::config::{SharedStrategy, StickyPick};
use crate::protocol::MqttStr;
use crate::rng::SplitMix64 as Rng;
use crate::session::{DeliveryOpts, Message, ShareName, SubIds};
use crate::topic::{Matches, TopicTrie};

/// One member of a share group, broker-wide: a session on its home shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId {
    pub shard: u32,
    pub client: u32,
    /// The session's generation, so a new session in the same slot is another member.
    pub generation: u32,
}

/// A member and how its subscription wants the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub id: MemberId,
    pub opts: SubOpts,
}

/// A membership change, broadcast by the member's home shard.
#[derive(Debug)]
pub struct SharedMember {
    pub share: Arc<ShareName>,
    pub member: Member,
}

/// A message for one member, sent to the member's shard.
#[derive(Debug)]
pub struct SharedDelivery {
    pub msg: Arc<Message>,
    pub share: Arc<ShareName>,
    pub member: Member,
}

/// A publishing client's strategy state per group: its `round_robin` counter and `sticky` pick.
pub(super) type Picks = AHashMap<Arc<ShareName>, Pick>;

#[derive(Debug, Clone, Copy)]
pub(super) struct Pick {
    counter: u64,
    sticky: Option<MemberId>,
}

/// A client's shared-subscription state, allocated on first use: its memberships, and as a
/// publisher its per-group strategy state.
#[derive(Debug, Default)]
pub(super) struct ClientShared {
    pub subs: Vec<(Arc<ShareName>, SubOpts)>,
    pub picks: Picks,
}

/// Who published the message being dispatched, when it is a client of this shard.
pub(super) struct Publisher<'a> {
    pub client_id: &'a str,
    /// Where its [`ClientShared`] is (or will be).
    pub extra: &'a mut Option<Box<super::ClientExtra>>,
}

#[derive(Debug)]
struct Group {
    share: Arc<ShareName>,
    /// Sorted by id, never empty (a group without members is removed).
    members: Vec<Member>,
    /// `round_robin_per_group`, and `round_robin` without a publisher.
    counter: u64,
    /// `sticky` without a publisher.
    sticky: Option<MemberId>,
}

/// Every share group of the broker, with its members (replicated on every shard).
#[derive(Debug)]
pub(super) struct SharedSubs {
    trie: TopicTrie,
    /// Indexed by `FilterId::index()`: the groups sharing that filter.
    groups: Vec<Vec<Group>>,
    rng: Rng,
    /// Members on this shard.
    local_members: usize,
}

impl SharedSubs {
    pub fn new(seed: u64) -> Self {
        SharedSubs {
            trie: TopicTrie::default(),
            groups: Vec::new(),
            rng: Rng(seed),
            local_members: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.trie.is_empty()
    }

    /// Some share group's filter matches `topic`.
    pub fn any_match(&self, topic: &str, matches: &mut Matches) -> bool {
        super::subscribe::any_match(&self.trie, topic, matches)
    }

    /// Adds `member`, or updates its options; true when it was not a member.
    pub fn join(&mut self, share: &Arc<ShareName>, member: Member, me: ShardId) -> bool {
        let id = self.trie.insert(&share.filter).index();
        if self.groups.len() <= id {
            self.groups.resize_with(id + 1, Vec::new);
        }
        let groups = &mut self.groups[id];
        let group = match groups.iter_mut().position(|g| g.share.group == share.group) {
            Some(i) => &mut groups[i],
            None => {
                groups.push(Group {
                    share: share.clone(),
                    members: Vec::new(),
                    counter: 0,
                    sticky: None,
                });
                groups.last_mut().expect("just pushed")
            }
        };
        match group.members.binary_search_by_key(&member.id, |m| m.id) {
            Ok(i) => {
                group.members[i].opts = member.opts;
                false
            }
            Err(i) => {
                group.members.insert(i, member);
                if member.id.shard as usize == me {
                    self.local_members += 1;
                }
                true
            }
        }
    }

    /// Removes a member; a group left without members goes.
    pub fn leave(&mut self, share: &ShareName, id: MemberId, me: ShardId) {
        let Some(fid) = self.trie.get(&share.filter) else {
            return;
        };
        let groups = &mut self.groups[fid.index()];
        let Some(gi) = groups.iter().position(|g| g.share.group == share.group) else {
            return;
        };
        let members = &mut groups[gi].members;
        if let Ok(i) = members.binary_search_by_key(&id, |m| m.id) {
            members.remove(i);
            if id.shard as usize == me {
                self.local_members -= 1;
            }
        }
        if members.is_empty() {
            groups.swap_remove(gi);
            if groups.is_empty() {
                *groups = Vec::new();
                self.trie.remove(&share.filter);
            }
        }
    }

    /// Shared subscriptions of this shard's sessions.
    pub fn local_members(&self) -> usize {
        self.local_members
    }

    /// Picks one member of every group whose filter matches `msg`'s topic.
    pub fn pick_all(
        &mut self,
        msg: &Message,
        ctx: PickCtx<'_>,
        mut publisher: Option<Publisher<'_>>,
        matches: &mut Matches,
        out: &mut Vec<(Arc<ShareName>, Member)>,
    ) {
        if self.trie.is_empty() {
            return;
        }
        self.trie.matches(&msg.topic, matches);
        for fid in matches.ids() {
            for group in &mut self.groups[fid.index()] {
                let strategy = ctx.strategy_of(&group.share.group);
                let m = pick(
                    group,
                    strategy,
                    msg,
                    &ctx,
                    publisher.as_mut(),
                    &mut self.rng,
                );
                out.push((group.share.clone(), m));
            }
        }
    }

    /// Picks a member of one group for a message handed back by a member that left; `None` when
    /// the group has no member.
    pub fn pick_again(
        &mut self,
        share: &ShareName,
        msg: &Message,
        ctx: PickCtx<'_>,
    ) -> Option<(Arc<ShareName>, Member)> {
        let fid = self.trie.get(&share.filter)?;
        let group = self.groups[fid.index()]
            .iter_mut()
            .find(|g| g.share.group == share.group)?;
        let strategy = ctx.strategy_of(&group.share.group);
        let m = pick(group, strategy, msg, &ctx, None, &mut self.rng);
        Some((group.share.clone(), m))
    }
}

/// What a pick needs from the broker.
#[derive(Clone, Copy)]
pub(super) struct PickCtx<'a> {
    pub shard: ShardId,
    pub settings: &'a super::Settings,
}

impl PickCtx<'_> {
    fn strategy_of(&self, group: &str) -> SharedStrategy {
        self.settings.shared_strategy_of(group)
    }
}

fn pick(
    group: &mut Group,
    strategy: SharedStrategy,
    msg: &Message,
    ctx: &PickCtx<'_>,
    publisher: Option<&mut Publisher<'_>>,
    rng: &mut Rng,
) -> Member {
    let members = &group.members;
    let n = members.len() as u64;
    let index = match strategy {
        SharedStrategy::Random => rng.below(n),
        SharedStrategy::RoundRobin => match publisher {
            Some(p) => next(&mut pick_state(p, &group.share, rng).counter, n),
            None => next(&mut group.counter, n),
        },
        SharedStrategy::RoundRobinPerGroup => next(&mut group.counter, n),
        SharedStrategy::Local => local(members, ctx.shard, rng),
        SharedStrategy::HashClientid => client_hash(publisher.as_deref(), msg) % n,
        SharedStrategy::HashTopic => stable_hash(msg.topic.as_bytes()) % n,
        SharedStrategy::Sticky => {
            let hash = match ctx.settings.sticky_pick {
                StickyPick::HashClientid => client_hash(publisher.as_deref(), msg),
                StickyPick::HashTopic => stable_hash(msg.topic.as_bytes()),
                StickyPick::Random | StickyPick::Local => 0,
            };
            let slot = match publisher {
                Some(p) => &mut pick_state(p, &group.share, rng).sticky,
                None => &mut group.sticky,
            };
            let kept = slot.and_then(|id| members.binary_search_by_key(&id, |m| m.id).ok());
            match kept {
                Some(i) => i as u64,
                None => {
                    let i = match ctx.settings.sticky_pick {
                        StickyPick::Random => rng.below(n),
                        StickyPick::Local => local(members, ctx.shard, rng),
                        StickyPick::HashClientid | StickyPick::HashTopic => hash % n,
                    };
                    *slot = Some(members[i as usize].id);
                    i
                }
            }
        }
    };
    members[index as usize]
}

/// `hash_clientid`: the publisher's client id; without a publisher (a message handed back by a
/// member that left), its publisher id — the same for every message of one publisher.
fn client_hash(publisher: Option<&Publisher<'_>>, msg: &Message) -> u64 {
    match publisher {
        Some(p) => stable_hash(p.client_id.as_bytes()),
        None => stable_hash(&msg.publisher_id.to_le_bytes()),
    }
}

/// A publisher's state for `share`, created with a random `round_robin` start.
fn pick_state<'p>(p: &'p mut Publisher<'_>, share: &Arc<ShareName>, rng: &mut Rng) -> &'p mut Pick {
    let extra = p.extra.get_or_insert_with(Default::default);
    let picks = &mut extra.shared.get_or_insert_with(Default::default).picks;
    if !picks.contains_key(share) {
        let start = rng.next_u64();
        picks.insert(
            share.clone(),
            Pick {
                counter: start,
                sticky: None,
            },
        );
    }
    picks.get_mut(share).expect("just inserted")
}

fn next(counter: &mut u64, n: u64) -> u64 {
    let i = *counter % n;
    *counter = counter.wrapping_add(1);
    i
}

/// A random member on `shard`, or any member when none is.
fn local(members: &[Member], shard: ShardId, rng: &mut Rng) -> u64 {
    let on_shard = members
        .iter()
        .filter(|m| m.id.shard as usize == shard)
        .count() as u64;
    if on_shard == 0 {
        return rng.below(members.len() as u64);
    }
    let k = rng.below(on_shard) as usize;
    let (i, _) = members
        .iter()
        .enumerate()
        .filter(|(_, m)| m.id.shard as usize == shard)
        .nth(k)
        .expect("k < on_shard");
    i as u64
}

/// How a session keeps a shared subscription: `$queue/<f>` is the same subscription as
/// `$share/$queue/<f>`, and unsubscribing either form ends it.
pub(super) fn normalize(group: &str, filter: &str) -> MqttStr {
    MqttStr::from(format!("$share/{group}/{filter}").as_str())
}

impl Broker {
    fn member_id(&self, key: ClientKey) -> MemberId {
        MemberId {
            shard: self.shard as u32,
            client: key,
            generation: self.clients[key as usize].generation,
        }
    }

    /// Adds or updates `key`'s membership of `share`; `Some(existed)`, or `None` over
    /// `max_subscriptions`.
    pub(super) fn add_shared_sub(
        &mut self,
        key: ClientKey,
        share: Arc<ShareName>,
        opts: SubOpts,
    ) -> Option<bool> {
        let count = self.subscription_count(key);
        let max = self.settings.max_subscriptions;
        let state = self.clients[key as usize]
            .extra_mut()
            .shared
            .get_or_insert_with(Default::default);
        let existed = match state.subs.iter_mut().find(|(n, _)| **n == *share) {
            Some(entry) => {
                entry.1 = opts;
                true
            }
            None if max.is_some_and(|max| count >= max) => return None,
            None => {
                state.subs.push((share.clone(), opts));
                false
            }
        };
        self.shared_join(key, &share, opts);
        Some(existed)
    }

    /// Ends `key`'s membership of `share`; whether it was a member.
    pub(super) fn remove_shared_sub(&mut self, key: ClientKey, share: &ShareName) -> bool {
        let Some(state) = self.clients[key as usize].shared_mut() else {
            return false;
        };
        let Some(i) = state.subs.iter().position(|(n, _)| **n == *share) else {
            return false;
        };
        let (share, _) = state.subs.remove(i);
        self.shared_leave(key, &share);
        true
    }

    /// Ends every membership of a session that ends.
    pub(super) fn end_shared(&mut self, key: ClientKey) {
        let subs = match self.clients[key as usize].shared_mut() {
            Some(state) => std::mem::take(&mut state.subs),
            None => return,
        };
        for (share, _) in subs {
            self.shared_leave(key, &share);
        }
    }

    /// `key` joins `share` (or changes its options): applied here, broadcast to the other shards;
    /// the SUBACK waits for them (the route epoch).
    pub(super) fn shared_join(&mut self, key: ClientKey, share: &Arc<ShareName>, opts: SubOpts) {
        let member = Member {
            id: self.member_id(key),
            opts,
        };
        self.shared.join(share, member, self.shard);
        if self.nr_shards > 1 {
            let share = share.clone();
            self.broadcast(|| {
                MeshMsg::SharedAdd(Box::new(SharedMember {
                    share: share.clone(),
                    member,
                }))
            });
            self.route_sync.epoch += 1;
        }
    }

    /// `key` leaves `share`, here and on the other shards.
    pub(super) fn shared_leave(&mut self, key: ClientKey, share: &Arc<ShareName>) {
        let member = Member {
            id: self.member_id(key),
            opts: SubOpts::default(),
        };
        self.shared.leave(share, member.id, self.shard);
        if self.nr_shards > 1 {
            let share = share.clone();
            self.broadcast(|| {
                MeshMsg::SharedDel(Box::new(SharedMember {
                    share: share.clone(),
                    member,
                }))
            });
        }
    }

    pub(super) fn shared_add_in(&mut self, m: SharedMember) {
        self.shared.join(&m.share, m.member, self.shard);
    }

    pub(super) fn shared_del_in(&mut self, m: SharedMember) {
        self.shared.leave(&m.share, m.member.id, self.shard);
    }

    /// Sends `msg` to one member of every matching group; true when some group matched.
    /// `publisher` is the publishing client when it is one of this shard's.
    pub(super) fn dispatch_shared(
        &mut self,
        msg: &Arc<Message>,
        publisher: Option<ClientKey>,
    ) -> bool {
        if self.shared.is_empty() {
            return false;
        }
        let mut picked = std::mem::take(&mut self.shared_scratch);
        let ctx = PickCtx {
            shard: self.shard,
            settings: &self.settings,
        };
        let publisher = publisher
            .and_then(|k| self.clients.get_mut(k as usize))
            .map(|c| Publisher {
                client_id: &c.id,
                extra: &mut c.extra,
            });
        self.shared
            .pick_all(msg, ctx, publisher, &mut self.matches, &mut picked);
        let matched = !picked.is_empty();
        for (share, member) in picked.drain(..) {
            self.send_shared(msg.clone(), share, member);
        }
        self.shared_scratch = picked;
        matched
    }

    fn send_shared(&mut self, msg: Arc<Message>, share: Arc<ShareName>, member: Member) {
        let dest = member.id.shard as usize;
        if dest == self.shard {
            self.shared_deliver(SharedDelivery { msg, share, member });
        } else {
            let d = SharedDelivery { msg, share, member };
            self.send_mesh(dest, MeshMsg::SharedPublish(Box::new(d)));
        }
    }

    /// A message for a member on this shard; dispatched again if the member has left the group.
    pub(super) fn shared_deliver(&mut self, d: SharedDelivery) {
        let id = d.member.id;
        // Still the same session, and still in the group (it may have unsubscribed while the
        // message crossed).
        let member = self.clients.get(id.client as usize).is_some_and(|c| {
            c.generation == id.generation
                && c.shared()
                    .is_some_and(|s| s.subs.iter().any(|(n, _)| **n == *d.share))
        });
        if !member {
            self.redispatch(d.msg, &d.share);
            return;
        }
        let opts = DeliveryOpts {
            qos: d.member.opts.qos,
            retain_as_published: d.member.opts.retain_as_published,
            retained_on_subscribe: false,
            subscription_ids: d
                .member
                .opts
                .subscription_id
                .map_or(SubIds::None, SubIds::One),
            shared: Some(d.share),
        };
        self.deliver_to(id.client, d.msg, opts);
    }

    /// Sends a message of `share` to another member; dropped and counted when none is left.
    pub(super) fn redispatch(&mut self, msg: Arc<Message>, share: &ShareName) {
        let ctx = PickCtx {
            shard: self.shard,
            settings: &self.settings,
        };
        match self.shared.pick_again(share, &msg, ctx) {
            Some((share, member)) => {
                self.counters.shared_redispatched += 1;
                self.send_shared(msg, share, member);
            }
            None => self.counters.shared_dropped_no_member += 1,
        }
    }
}
