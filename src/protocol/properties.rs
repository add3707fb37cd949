//! MQTT 5.0 properties (§2.2.2): the identifiers, one typed set per packet family, and the rules
//! on which set may hold which property, which may repeat and which values are legal.
//! Pure data; used on every shard.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;

use super::wire::{MqttStr, Reader, Sink, Sizer};
use super::{DecodeError, QoS};

/// User Property pairs, in the order they were received (order is significant, [MQTT-3.3.2-18]).
pub type UserProperties = Vec<(MqttStr, MqttStr)>;

/// Property identifiers (MQTT 5.0 §2.2.2.2).
pub mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// One property as read off the wire; its identifier fixed its data type.
pub(crate) enum Value {
    Byte(u8),
    U16(u16),
    U32(u32),
    Varint(u32),
    Str(MqttStr),
    Bin(Bytes),
    Pair(MqttStr, MqttStr),
}

fn read_property(r: &mut Reader) -> Result<(u8, Value), DecodeError> {
    use id::*;
    // The identifier is a Variable Byte Integer, but every defined one fits in one byte; a
    // multi-byte identifier is therefore unknown, and unknown identifiers are malformed.
    let pid = r.varint()?;
    let pid = u8::try_from(pid).map_err(|_| DecodeError::UnknownProperty(0xff))?;
    let v = match pid {
        PAYLOAD_FORMAT_INDICATOR
        | REQUEST_PROBLEM_INFORMATION
        | REQUEST_RESPONSE_INFORMATION
        | MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => Value::Byte(r.u8()?),
        SERVER_KEEP_ALIVE | RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | TOPIC_ALIAS => {
            Value::U16(r.u16()?)
        }
        MESSAGE_EXPIRY_INTERVAL
        | SESSION_EXPIRY_INTERVAL
        | WILL_DELAY_INTERVAL
        | MAXIMUM_PACKET_SIZE => Value::U32(r.u32()?),
        SUBSCRIPTION_IDENTIFIER => Value::Varint(r.varint()?),
        CONTENT_TYPE
        | RESPONSE_TOPIC
        | ASSIGNED_CLIENT_IDENTIFIER
        | AUTHENTICATION_METHOD
        | RESPONSE_INFORMATION
        | SERVER_REFERENCE
        | REASON_STRING => Value::Str(r.string()?),
        CORRELATION_DATA | AUTHENTICATION_DATA => Value::Bin(r.binary()?),
        USER_PROPERTY => Value::Pair(r.string()?, r.string()?),
        other => return Err(DecodeError::UnknownProperty(other)),
    };
    Ok((pid, v))
}

/// A packet's property set: how to take one property in, and how to describe itself to a sink.
pub(crate) trait PropertySet: Default {
    /// Places one property; an identifier the packet does not allow is a Malformed Packet
    /// (§2.2.2.2), a second copy of a single-valued one a Protocol Error.
    fn apply(&mut self, pid: u8, v: Value) -> Result<(), DecodeError>;
    /// Checks that need the whole set (e.g. Authentication Data without a Method).
    fn validate(&self) -> Result<(), DecodeError> {
        Ok(())
    }
    fn visit<S: Sink>(&self, s: &mut S);
}

/// Reads a Property Length and the properties it covers.
#[inline]
pub(crate) fn decode<P: PropertySet>(r: &mut Reader) -> Result<P, DecodeError> {
    let len = r.varint()? as usize;
    // Read in place (no sub-buffer and its refcount traffic): the block ends when `end` bytes
    // of the packet are left, and a property running past that end is truncated.
    let end = r
        .remaining()
        .checked_sub(len)
        .ok_or(DecodeError::Truncated)?;
    let mut set = P::default();
    while r.remaining() > end {
        let (pid, v) = read_property(r)?;
        if r.remaining() < end {
            return Err(DecodeError::Truncated);
        }
        set.apply(pid, v)?;
    }
    set.validate()?;
    Ok(set)
}

/// Writes a Property Length and the properties.
pub(crate) fn encode<P: PropertySet, S: Sink>(set: &P, s: &mut S) {
    let mut sizer = Sizer::default();
    set.visit(&mut sizer);
    s.varint(sizer.len as u32);
    set.visit(s);
}

fn once<T>(slot: &mut Option<T>, v: T, pid: u8) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty(pid));
    }
    *slot = Some(v);
    Ok(())
}

fn flag(v: u8, pid: u8) -> Result<bool, DecodeError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::InvalidPropertyValue(pid)),
    }
}

fn nonzero16(v: u16, pid: u8) -> Result<NonZeroU16, DecodeError> {
    NonZeroU16::new(v).ok_or(DecodeError::InvalidPropertyValue(pid))
}

fn nonzero32(v: u32, pid: u8) -> Result<NonZeroU32, DecodeError> {
    NonZeroU32::new(v).ok_or(DecodeError::InvalidPropertyValue(pid))
}

fn put_u8<S: Sink>(s: &mut S, pid: u8, v: Option<u8>) {
    if let Some(v) = v {
        s.u8(pid);
        s.u8(v);
    }
}

fn put_flag<S: Sink>(s: &mut S, pid: u8, v: Option<bool>) {
    put_u8(s, pid, v.map(u8::from))
}

fn put_u16<S: Sink>(s: &mut S, pid: u8, v: Option<u16>) {
    if let Some(v) = v {
        s.u8(pid);
        s.u16(v);
    }
}

fn put_u32<S: Sink>(s: &mut S, pid: u8, v: Option<u32>) {
    if let Some(v) = v {
        s.u8(pid);
        s.u32(v);
    }
}

fn put_str<S: Sink>(s: &mut S, pid: u8, v: &Option<MqttStr>) {
    if let Some(v) = v {
        s.u8(pid);
        s.string(v);
    }
}

fn put_bin<S: Sink>(s: &mut S, pid: u8, v: &Option<Bytes>) {
    if let Some(v) = v {
        s.u8(pid);
        s.binary(v);
    }
}

fn put_sub_id<S: Sink>(s: &mut S, v: NonZeroU32) {
    s.u8(id::SUBSCRIPTION_IDENTIFIER);
    s.varint(v.get());
}

fn put_user<S: Sink>(s: &mut S, user: &UserProperties) {
    for (k, v) in user {
        s.u8(id::USER_PROPERTY);
        s.string(k);
        s.string(v);
    }
}

/// Largest Subscription Identifier (a Variable Byte Integer, §3.3.2.3.8).
pub const SUBSCRIPTION_IDENTIFIER_MAX: u32 = super::wire::VARINT_MAX;

fn subscription_id(v: u32) -> Result<NonZeroU32, DecodeError> {
    // 0 is a Protocol Error ([MQTT-3.8.2.1.2] text); the varint reader bounds the top.
    nonzero32(v, id::SUBSCRIPTION_IDENTIFIER)
}

/// CONNECT properties (§3.1.2.11).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectProperties {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<NonZeroU16>,
    pub maximum_packet_size: Option<NonZeroU32>,
    pub topic_alias_maximum: Option<u16>,
    pub request_response_information: Option<bool>,
    pub request_problem_information: Option<bool>,
    pub user_properties: UserProperties,
    pub authentication_method: Option<MqttStr>,
    pub authentication_data: Option<Bytes>,
}

impl PropertySet for ConnectProperties {
    fn apply(&mut self, pid: u8, v: Value) -> Result<(), DecodeError> {
        use id::*;
        match (pid, v) {
            (SESSION_EXPIRY_INTERVAL, Value::U32(v)) => {
                once(&mut self.session_expiry_interval, v, pid)
            }
            (RECEIVE_MAXIMUM, Value::U16(v)) => {
                once(&mut self.receive_maximum, nonzero16(v, pid)?, pid)
            }
            (MAXIMUM_PACKET_SIZE, Value::U32(v)) => {
                once(&mut self.maximum_packet_size, nonzero32(v, pid)?, pid)
            }
            (TOPIC_ALIAS_MAXIMUM, Value::U16(v)) => once(&mut self.topic_alias_maximum, v, pid),
            (REQUEST_RESPONSE_INFORMATION, Value::Byte(v)) => {
                once(&mut self.request_response_information, flag(v, pid)?, pid)
            }
            (REQUEST_PROBLEM_INFORMATION, Value::Byte(v)) => {
                once(&mut self.request_problem_information, flag(v, pid)?, pid)
            }
            (USER_PROPERTY, Value::Pair(k, v)) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            (AUTHENTICATION_METHOD, Value::Str(v)) => once(&mut self.authentication_method, v, pid),
            (AUTHENTICATION_DATA, Value::Bin(v)) => once(&mut self.authentication_data, v, pid),
            (pid, _) => Err(DecodeError::PropertyNotAllowed(pid)),
        }
    }

    fn validate(&self) -> Result<(), DecodeError> {
        auth_data_needs_method(&self.authentication_method, &self.authentication_data)
    }

    fn visit<S: Sink>(&self, s: &mut S) {
        use id::*;
        put_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_u16(
            s,
            RECEIVE_MAXIMUM,
            self.receive_maximum.map(NonZeroU16::get),
        );
        put_u32(
            s,
            MAXIMUM_PACKET_SIZE,
            self.maximum_packet_size.map(NonZeroU32::get),
        );
        put_u16(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_flag(
            s,
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        put_flag(
            s,
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        put_user(s, &self.user_properties);
        put_str(s, AUTHENTICATION_METHOD, &self.authentication_method);
        put_bin(s, AUTHENTICATION_DATA, &self.authentication_data);
    }
}

/// "It is a Protocol Error to include Authentication Data if there is no Authentication Method."
fn auth_data_needs_method(
    method: &Option<MqttStr>,
    data: &Option<Bytes>,
) -> Result<(), DecodeError> {
    if data.is_some() && method.is_none() {
        return Err(DecodeError::AuthenticationDataWithoutMethod);
    }
    Ok(())
}

/// Will properties, carried in the CONNECT payload (§3.1.3.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WillProperties {
    pub will_delay_interval: Option<u32>,
    pub payload_format_indicator: Option<bool>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<MqttStr>,
    pub response_topic: Option<MqttStr>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: UserProperties,
}

impl PropertySet for WillProperties {
    fn apply(&mut self, pid: u8, v: Value) -> Result<(), DecodeError> {
        use id::*;
        match (pid, v) {
            (WILL_DELAY_INTERVAL, Value::U32(v)) => once(&mut self.will_delay_interval, v, pid),
            (PAYLOAD_FORMAT_INDICATOR, Value::Byte(v)) => {
                once(&mut self.payload_format_indicator, flag(v, pid)?, pid)
            }
            (MESSAGE_EXPIRY_INTERVAL, Value::U32(v)) => {
                once(&mut self.message_expiry_interval, v, pid)
            }
            (CONTENT_TYPE, Value::Str(v)) => once(&mut self.content_type, v, pid),
            (RESPONSE_TOPIC, Value::Str(v)) => {
                once(&mut self.response_topic, response_topic(v)?, pid)
            }
            (CORRELATION_DATA, Value::Bin(v)) => once(&mut self.correlation_data, v, pid),
            (USER_PROPERTY, Value::Pair(k, v)) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            (pid, _) => Err(DecodeError::PropertyNotAllowed(pid)),
        }
    }

    fn visit<S: Sink>(&self, s: &mut S) {
        use id::*;
        put_u32(s, WILL_DELAY_INTERVAL, self.will_delay_interval);
        put_flag(s, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        put_u32(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        put_str(s, CONTENT_TYPE, &self.content_type);
        put_str(s, RESPONSE_TOPIC, &self.response_topic);
        put_bin(s, CORRELATION_DATA, &self.correlation_data);
        put_user(s, &self.user_properties);
    }
}

/// A Response Topic is a Topic Name: no wildcards ([MQTT-3.1.3-11] for wills, [MQTT-3.3.2-14]).
fn response_topic(v: MqttStr) -> Result<MqttStr, DecodeError> {
    if v.is_empty() || v.contains(['+', '#']) {
        return Err(DecodeError::InvalidResponseTopic);
    }
    Ok(v)
}

/// CONNACK properties (§3.2.2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnAckProperties {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<NonZeroU16>,
    /// Only QoS 0 or 1 may be sent; absent means QoS 2 is supported.
    pub maximum_qos: Option<QoS>,
    pub retain_available: Option<bool>,
    pub maximum_packet_size: Option<NonZeroU32>,
    pub assigned_client_identifier: Option<MqttStr>,
    pub topic_alias_maximum: Option<u16>,
    pub reason_string: Option<MqttStr>,
    pub user_properties: UserProperties,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifiers_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
    pub server_keep_alive: Option<u16>,
    pub response_information: Option<MqttStr>,
    pub server_reference: Option<MqttStr>,
    pub authentication_method: Option<MqttStr>,
    pub authentication_data: Option<Bytes>,
}

impl PropertySet for ConnAckProperties {
    fn apply(&mut self, pid: u8, v: Value) -> Result<(), DecodeError> {
        use id::*;
        match (pid, v) {
            (SESSION_EXPIRY_INTERVAL, Value::U32(v)) => {
                once(&mut self.session_expiry_interval, v, pid)
            }
            (RECEIVE_MAXIMUM, Value::U16(v)) => {
                once(&mut self.receive_maximum, nonzero16(v, pid)?, pid)
            }
            (MAXIMUM_QOS, Value::Byte(v)) => {
                let q = match v {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    _ => return Err(DecodeError::InvalidPropertyValue(pid)),
                };
                once(&mut self.maximum_qos, q, pid)
            }
            (RETAIN_AVAILABLE, Value::Byte(v)) => {
                once(&mut self.retain_available, flag(v, pid)?, pid)
            }
            (MAXIMUM_PACKET_SIZE, Value::U32(v)) => {
                once(&mut self.maximum_packet_size, nonzero32(v, pid)?, pid)
            }
            (ASSIGNED_CLIENT_IDENTIFIER, Value::Str(v)) => {
                once(&mut self.assigned_client_identifier, v, pid)
            }
            (TOPIC_ALIAS_MAXIMUM, Value::U16(v)) => once(&mut self.topic_alias_maximum, v, pid),
            (REASON_STRING, Value::Str(v)) => once(&mut self.reason_string, v, pid),
            (USER_PROPERTY, Value::Pair(k, v)) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            (WILDCARD_SUBSCRIPTION_AVAILABLE, Value::Byte(v)) => once(
                &mut self.wildcard_subscription_available,
                flag(v, pid)?,
                pid,
            ),
            (SUBSCRIPTION_IDENTIFIER_AVAILABLE, Value::Byte(v)) => once(
                &mut self.subscription_identifiers_available,
                flag(v, pid)?,
                pid,
            ),
            (SHARED_SUBSCRIPTION_AVAILABLE, Value::Byte(v)) => {
                once(&mut self.shared_subscription_available, flag(v, pid)?, pid)
            }
            (SERVER_KEEP_ALIVE, Value::U16(v)) => once(&mut self.server_keep_alive, v, pid),
            (RESPONSE_INFORMATION, Value::Str(v)) => once(&mut self.response_information, v, pid),
            (SERVER_REFERENCE, Value::Str(v)) => once(&mut self.server_reference, v, pid),
            (AUTHENTICATION_METHOD, Value::Str(v)) => once(&mut self.authentication_method, v, pid),
            (AUTHENTICATION_DATA, Value::Bin(v)) => once(&mut self.authentication_data, v, pid),
            (pid, _) => Err(DecodeError::PropertyNotAllowed(pid)),
        }
    }

    fn validate(&self) -> Result<(), DecodeError> {
        auth_data_needs_method(&self.authentication_method, &self.authentication_data)
    }

    fn visit<S: Sink>(&self, s: &mut S) {
        use id::*;
        put_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_u16(
            s,
            RECEIVE_MAXIMUM,
            self.receive_maximum.map(NonZeroU16::get),
        );
        put_u8(s, MAXIMUM_QOS, self.maximum_qos.map(|q| q as u8));
        put_flag(s, RETAIN_AVAILABLE, self.retain_available);
        put_u32(
            s,
            MAXIMUM_PACKET_SIZE,
            self.maximum_packet_size.map(NonZeroU32::get),
        );
        put_str(
            s,
            ASSIGNED_CLIENT_IDENTIFIER,
            &self.assigned_client_identifier,
        );
        put_u16(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_str(s, REASON_STRING, &self.reason_string);
        put_user(s, &self.user_properties);
        put_flag(
            s,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        put_flag(
            s,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        );
        put_flag(
            s,
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        put_u16(s, SERVER_KEEP_ALIVE, self.server_keep_alive);
        put_str(s, RESPONSE_INFORMATION, &self.response_information);
        put_str(s, SERVER_REFERENCE, &self.server_reference);
        put_str(s, AUTHENTICATION_METHOD, &self.authentication_method);
        put_bin(s, AUTHENTICATION_DATA, &self.authentication_data);
    }
}

/// PUBLISH properties (§3.3.2.3). The three fixed-size ones are inline; the rest, rare on the
/// hot path, sit behind one box that is absent when none of them is present, so a PUBLISH
/// without (or with only fixed-size) properties stays small and allocation-free.
#[derive(Debug, Clone, Default)]
pub struct PublishProperties {
    pub payload_format_indicator: Option<bool>,
    pub message_expiry_interval: Option<u32>,
    pub topic_alias: Option<NonZeroU16>,
    /// `None` means the same as a box of all-absent properties (equality treats them alike).
    pub extra: Option<Box<PublishExtraProperties>>,
}

/// The variable-size PUBLISH properties, boxed in [`PublishProperties::extra`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishExtraProperties {
    pub response_topic: Option<MqttStr>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: UserProperties,
    /// May repeat: one per matching subscription that had an identifier (server to client).
    pub subscription_identifiers: Vec<NonZeroU32>,
    pub content_type: Option<MqttStr>,
}

static NO_EXTRA: PublishExtraProperties = PublishExtraProperties {
    response_topic: None,
    correlation_data: None,
    user_properties: Vec::new(),
    subscription_identifiers: Vec::new(),
    content_type: None,
};

impl PublishExtraProperties {
    pub fn is_empty(&self) -> bool {
        self.response_topic.is_none()
            && self.correlation_data.is_none()
            && self.user_properties.is_empty()
            && self.subscription_identifiers.is_empty()
            && self.content_type.is_none()
    }
}

impl PublishProperties {
    /// The variable-size properties (all absent when there is no box).
    #[inline]
    pub fn extra(&self) -> &PublishExtraProperties {
        self.extra.as_deref().unwrap_or(&NO_EXTRA)
    }

    /// The variable-size properties for writing; allocates the box on first use.
    pub fn extra_mut(&mut self) -> &mut PublishExtraProperties {
        self.extra.get_or_insert_default()
    }

    /// Builds the set from its variable-size part, boxing it only when it holds something.
    pub fn with_extra(mut self, extra: PublishExtraProperties) -> Self {
        self.extra = (!extra.is_empty()).then(|| Box::new(extra));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.payload_format_indicator.is_none()
            && self.message_expiry_interval.is_none()
            && self.topic_alias.is_none()
            && self.extra().is_empty()
    }
}

impl PartialEq for PublishProperties {
    fn eq(&self, other: &Self) -> bool {
        self.payload_format_indicator == other.payload_format_indicator
            && self.message_expiry_interval == other.message_expiry_interval
            && self.topic_alias == other.topic_alias
            && self.extra() == other.extra()
    }
}

impl Eq for PublishProperties {}

impl PropertySet for PublishProperties {
    fn apply(&mut self, pid: u8, v: Value) -> Result<(), DecodeError> {
        use id::*;
        match (pid, v) {
            (PAYLOAD_FORMAT_INDICATOR, Value::Byte(v)) => {
                once(&mut self.payload_format_indicator, flag(v, pid)?, pid)
            }
            (MESSAGE_EXPIRY_INTERVAL, Value::U32(v)) => {
                once(&mut self.message_expiry_interval, v, pid)
            }
            (TOPIC_ALIAS, Value::U16(v)) => {
                // A Topic Alias of 0 is not permitted ([MQTT-3.3.2-8]): Topic Alias invalid.
                let alias = NonZeroU16::new(v).ok_or(DecodeError::TopicAliasZero)?;
                once(&mut self.topic_alias, alias, pid)
            }
            (RESPONSE_TOPIC, Value::Str(v)) => once(
                &mut self.extra_mut().response_topic,
                response_topic(v)?,
                pid,
            ),
            (CORRELATION_DATA, Value::Bin(v)) => {
                once(&mut self.extra_mut().correlation_data, v, pid)
            }
            (USER_PROPERTY, Value::Pair(k, v)) => {
                self.extra_mut().user_properties.push((k, v));
                Ok(())
            }
            (SUBSCRIPTION_IDENTIFIER, Value::Varint(v)) => {
                let sid = subscription_id(v)?;
                self.extra_mut().subscription_identifiers.push(sid);
                Ok(())
            }
            (CONTENT_TYPE, Value::Str(v)) => once(&mut self.extra_mut().content_type, v, pid),
            (pid, _) => Err(DecodeError::PropertyNotAllowed(pid)),
        }
    }

    fn visit<S: Sink>(&self, s: &mut S) {
        self.visit_into(s)
    }
}

impl PublishProperties {
    /// Writes the properties (without the Property Length).
    #[inline]
    pub(crate) fn visit_into<S: Sink>(&self, s: &mut S) {
        use id::*;
        put_flag(s, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        put_u32(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        put_u16(s, TOPIC_ALIAS, self.topic_alias.map(NonZeroU16::get));
        if let Some(e) = &self.extra {
            e.visit(s);
        }
    }

    /// The Property Length, computed directly for the fixed-size properties, and whether a
    /// variable-size one is too long to encode.
    #[inline]
    pub(crate) fn wire_len(&self) -> (usize, bool) {
        let mut len = 0;
        if self.payload_format_indicator.is_some() {
            len += 2;
        }
        if self.message_expiry_interval.is_some() {
            len += 5;
        }
        if self.topic_alias.is_some() {
            len += 3;
        }
        match &self.extra {
            None => (len, false),
            Some(e) => {
                let mut sizer = Sizer::default();
                e.visit(&mut sizer);
                (len + sizer.len, sizer.too_long_field)
            }
        }
    }
}

impl PublishExtraProperties {
    fn visit<S: Sink>(&self, s: &mut S) {
        use id::*;
        put_str(s, RESPONSE_TOPIC, &self.response_topic);
        put_bin(s, CORRELATION_DATA, &self.correlation_data);
        put_user(s, &self.user_properties);
        for &sid in &self.subscription_identifiers {
            put_sub_id(s, sid);
        }
        put_str(s, CONTENT_TYPE, &self.content_type);
    }
}

/// Reason String and User Properties: all that PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and
/// UNSUBACK may carry (§3.4.2.2 and siblings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckProperties {
    pub reason_string: Option<MqttStr>,
    pub user_properties: UserProperties,
}

impl AckProperties {
    pub fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }
}

impl PropertySet for AckProperties {
    fn apply(&mut self, pid: u8, v: Value) -> Result<(), DecodeError> {
        match (pid, v) {
            (id::REASON_STRING, Value::Str(v)) => once(&mut self.reason_string, v, pid),
            (id::USER_PROPERTY, Value::Pair(k, v)) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            (pid, _) => Err(DecodeError::PropertyNotAllowed(pid)),
        }
    }

    fn visit<S: Sink>(&self, s: &mut S) {
        put_str(s, id::REASON_STRING, &self.reason_string);
        put_user(s, &self.user_properties);
    }
}

/// SUBSCRIBE properties (§3.8.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeProperties {
    pub subscription_identifier: Option<NonZeroU32>,
    pub user_properties: UserProperties,
}

impl PropertySet for SubscribeProperties {
    fn apply(&mut self, pid: u8, v: Value) -> Result<(), DecodeError> {
        match (pid, v) {
            (id::SUBSCRIPTION_IDENTIFIER, Value::Varint(v)) => {
                once(&mut self.subscription_identifier, subscription_id(v)?, pid)
            }
            (id::USER_PROPERTY, Value::Pair(k, v)) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            (pid, _) => Err(DecodeError::PropertyNotAllowed(pid)),
        }
    }

    fn visit<S: Sink>(&self, s: &mut S) {
        if let Some(sid) = self.subscription_identifier {
            put_sub_id(s, sid);
        }
        put_user(s, &self.user_properties);
    }
}

/// UNSUBSCRIBE properties (§3.10.2.1): User Properties only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnsubscribeProperties {
    pub user_properties: UserProperties,
}

impl PropertySet for UnsubscribeProperties {
    fn apply(&mut self, pid: u8, v: Value) -> Result<(), DecodeError> {
        match (pid, v) {
            (id::USER_PROPERTY, Value::Pair(k, v)) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            (pid, _) => Err(DecodeError::PropertyNotAllowed(pid)),
        }
    }

    fn visit<S: Sink>(&self, s: &mut S) {
        put_user(s, &self.user_properties);
    }
}

/// DISCONNECT properties (§3.14.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisconnectProperties {
    pub session_expiry_interval: Option<u32>,
    pub reason_string: Option<MqttStr>,
    pub user_properties: UserProperties,
    pub server_reference: Option<MqttStr>,
}

impl DisconnectProperties {
    pub fn is_empty(&self) -> bool {
        *self == DisconnectProperties::default()
    }
}

impl PropertySet for DisconnectProperties {
    fn apply(&mut self, pid: u8, v: Value) -> Result<(), DecodeError> {
        use id::*;
        match (pid, v) {
            (SESSION_EXPIRY_INTERVAL, Value::U32(v)) => {
                once(&mut self.session_expiry_interval, v, pid)
            }
            (REASON_STRING, Value::Str(v)) => once(&mut self.reason_string, v, pid),
            (USER_PROPERTY, Value::Pair(k, v)) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            (SERVER_REFERENCE, Value::Str(v)) => once(&mut self.server_reference, v, pid),
            (pid, _) => Err(DecodeError::PropertyNotAllowed(pid)),
        }
    }

    fn visit<S: Sink>(&self, s: &mut S) {
        use id::*;
        put_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_str(s, REASON_STRING, &self.reason_string);
        put_user(s, &self.user_properties);
        put_str(s, SERVER_REFERENCE, &self.server_reference);
    }
}

/// AUTH properties (§3.15.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthProperties {
    pub authentication_method: Option<MqttStr>,
    pub authentication_data: Option<Bytes>,
    pub reason_string: Option<MqttStr>,
    pub user_properties: UserProperties,
}

impl AuthProperties {
    pub fn is_empty(&self) -> bool {
        *self == AuthProperties::default()
    }
}

impl PropertySet for AuthProperties {
    fn apply(&mut self, pid: u8, v: Value) -> Result<(), DecodeError> {
        use id::*;
        match (pid, v) {
            (AUTHENTICATION_METHOD, Value::Str(v)) => once(&mut self.authentication_method, v, pid),
            (AUTHENTICATION_DATA, Value::Bin(v)) => once(&mut self.authentication_data, v, pid),
            (REASON_STRING, Value::Str(v)) => once(&mut self.reason_string, v, pid),
            (USER_PROPERTY, Value::Pair(k, v)) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            (pid, _) => Err(DecodeError::PropertyNotAllowed(pid)),
        }
    }

    fn validate(&self) -> Result<(), DecodeError> {
        auth_data_needs_method(&self.authentication_method, &self.authentication_data)
    }

    fn visit<S: Sink>(&self, s: &mut S) {
        use id::*;
        put_str(s, AUTHENTICATION_METHOD, &self.authentication_method);
        put_bin(s, AUTHENTICATION_DATA, &self.authentication_data);
        put_str(s, REASON_STRING, &self.reason_string);
        put_user(s, &self.user_properties);
    }
}
