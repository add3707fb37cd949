//! Every protocol violation the codec detects, as a small `Copy` error, and the one place that
//! maps each to the spec statement it breaks and to what the broker must answer (a v5 reason code,
//! a v3 CONNACK return code, or a bare close). Pure data; used on every shard.

use super::{PacketType, ProtocolVersion, ReasonCode};

/// A protocol violation found while decoding (or, for a few, while checking packet order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("reserved packet type")]
    ReservedPacketType,
    #[error("invalid fixed header flags for {0:?}")]
    InvalidFlags(PacketType),
    #[error("malformed variable byte integer")]
    MalformedVarint,
    #[error("packet larger than the maximum packet size")]
    PacketTooLarge,
    #[error("a field runs past the end of the packet")]
    Truncated,
    #[error("bytes left over after the last field of the packet")]
    TrailingBytes,
    #[error("string is not well-formed UTF-8")]
    InvalidUtf8,
    #[error("string contains U+0000")]
    NulCharacter,
    #[error("packet identifier 0")]
    ZeroPacketId,
    #[error("unknown property identifier 0x{0:02x}")]
    UnknownProperty(u8),
    #[error("property 0x{0:02x} is not allowed on this packet")]
    PropertyNotAllowed(u8),
    #[error("property 0x{0:02x} given more than once")]
    DuplicateProperty(u8),
    #[error("property 0x{0:02x} has an invalid value")]
    InvalidPropertyValue(u8),
    #[error("authentication data without an authentication method")]
    AuthenticationDataWithoutMethod,
    #[error("AUTH without an authentication method")]
    AuthenticationMethodMissing,
    #[error("response topic is not a valid topic name")]
    InvalidResponseTopic,
    #[error("topic alias 0")]
    TopicAliasZero,
    #[error("first packet is not CONNECT")]
    FirstPacketNotConnect,
    #[error("second CONNECT on one connection")]
    SecondConnect,
    #[error("protocol name is not MQTT or MQIsdp")]
    InvalidProtocolName,
    #[error("unsupported protocol level")]
    UnsupportedProtocolVersion,
    #[error("CONNECT reserved flag is set")]
    ConnectReservedFlag,
    #[error("will QoS or will retain set without the will flag")]
    WillFlagsWithoutWill,
    #[error("will QoS 3")]
    WillQos3,
    #[error("password flag set without user name flag")]
    PasswordWithoutUsername,
    #[error("PUBLISH QoS 3")]
    PublishQos3,
    #[error("DUP set on a QoS 0 PUBLISH")]
    DupWithQos0,
    #[error("wildcard in a topic name")]
    TopicNameWildcard,
    #[error("empty topic name without a topic alias")]
    EmptyTopicName,
    #[error("SUBSCRIBE with no topic filter")]
    NoSubscribeFilters,
    #[error("reserved bits set in subscription options")]
    SubscriptionOptionsReserved,
    #[error("subscription QoS 3")]
    SubscriptionQos3,
    #[error("retain handling 3")]
    RetainHandling3,
    #[error("UNSUBSCRIBE with no topic filter")]
    NoUnsubscribeFilters,
    #[error("reason code not allowed on {0:?}")]
    ReasonCodeNotAllowed(PacketType),
    #[error("reserved CONNACK flags set")]
    ConnAckReservedFlags,
    #[error("will topic is not a valid topic name")]
    InvalidWillTopic,
    #[error("CONNACK with Session Present and a non-zero reason code")]
    SessionPresentWithError,
    #[error("{0:?} without any reason code")]
    NoReasonCodes(PacketType),
}

/// What the broker does about a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// Send a CONNACK with this code (v5 reason code; for v3 it is mapped with
    /// [`ReasonCode::to_connack_v3`]) and close.
    ConnAck(ReasonCode),
    /// Send a v5 DISCONNECT with this reason code and close.
    Disconnect(ReasonCode),
    /// Close the network connection without sending anything.
    Close,
}

impl DecodeError {
    /// The v5 reason code for this violation (§2.4, §4.13): 0x81 for packets that cannot be
    /// parsed, 0x82 for parsed packets with data the protocol does not allow, and the specific
    /// codes where the spec names one.
    pub fn reason_code(self) -> ReasonCode {
        use DecodeError::*;
        match self {
            ReservedPacketType
            | InvalidFlags(_)
            | MalformedVarint
            | Truncated
            | TrailingBytes
            | InvalidUtf8
            | NulCharacter
            | UnknownProperty(_)
            | PropertyNotAllowed(_)
            | ConnectReservedFlag
            | WillFlagsWithoutWill
            | WillQos3
            | PublishQos3
            | DupWithQos0
            | SubscriptionOptionsReserved
            | ReasonCodeNotAllowed(_)
            | ConnAckReservedFlags => ReasonCode::MalformedPacket,
            SessionPresentWithError | NoReasonCodes(_) => ReasonCode::ProtocolError,
            ZeroPacketId
            | DuplicateProperty(_)
            | InvalidPropertyValue(_)
            | AuthenticationDataWithoutMethod
            | InvalidResponseTopic
            | FirstPacketNotConnect
            | SecondConnect
            | InvalidProtocolName
            | PasswordWithoutUsername
            | EmptyTopicName
            | NoSubscribeFilters
            | SubscriptionQos3
            | RetainHandling3
            | NoUnsubscribeFilters
            | AuthenticationMethodMissing => ReasonCode::ProtocolError,
            PacketTooLarge => ReasonCode::PacketTooLarge,
            TopicAliasZero => ReasonCode::TopicAliasInvalid,
            TopicNameWildcard | InvalidWillTopic => ReasonCode::TopicNameInvalid,
            UnsupportedProtocolVersion => ReasonCode::UnsupportedProtocolVersion,
        }
    }

    /// The normative statement broken, as numbered in MQTT 5.0 (and 3.1.1 where it differs).
    pub fn statement(self) -> &'static str {
        use DecodeError::*;
        match self {
            ReservedPacketType => {
                "MQTT 5.0 §2.1.2, 3.1.1 §2.2.1: packet type 0 (and 15 before 5.0) is reserved"
            }
            InvalidFlags(_) => "[MQTT-2.1.3-1] (5.0), [MQTT-2.2.2-1] [MQTT-2.2.2-2] (3.1.1)",
            MalformedVarint => {
                "MQTT 5.0 §1.5.5, 3.1.1 §2.2.3: at most four bytes; [MQTT-1.5.5-1]: the fewest bytes"
            }
            PacketTooLarge => "[MQTT-3.2.2-15]: Maximum Packet Size exceeded",
            Truncated | TrailingBytes => {
                "MQTT 5.0 §2.1.4, 3.1.1 §2.2.3: Remaining Length must equal the packet's content"
            }
            InvalidUtf8 => "[MQTT-1.5.4-1] (5.0), [MQTT-1.5.3-1] (3.1.1)",
            NulCharacter => "[MQTT-1.5.4-2] (5.0), [MQTT-1.5.3-2] (3.1.1)",
            ZeroPacketId => "[MQTT-2.2.1-3] (5.0), [MQTT-2.3.1-1] (3.1.1)",
            UnknownProperty(_) | PropertyNotAllowed(_) => {
                "MQTT 5.0 §2.2.2.2: identifier not valid for this packet type"
            }
            DuplicateProperty(_) => {
                "MQTT 5.0 §3: it is a Protocol Error to include this property more than once"
            }
            InvalidPropertyValue(_) => {
                "MQTT 5.0 §3: it is a Protocol Error to give this property that value"
            }
            AuthenticationDataWithoutMethod => {
                "MQTT 5.0 §3.1.2.11.10: Authentication Data without Authentication Method"
            }
            AuthenticationMethodMissing => {
                "MQTT 5.0 §3.15.2.2.2: it is a Protocol Error to omit the Authentication Method"
            }
            InvalidResponseTopic => {
                "[MQTT-3.3.2-14]: the Response Topic must not contain wildcards"
            }
            TopicAliasZero => "[MQTT-3.3.2-8]: a Topic Alias of 0 is not permitted",
            FirstPacketNotConnect => "[MQTT-3.1.0-1]",
            SecondConnect => "[MQTT-3.1.0-2]",
            InvalidProtocolName => "[MQTT-3.1.2-1]",
            UnsupportedProtocolVersion => "[MQTT-3.1.2-2]",
            ConnectReservedFlag => "[MQTT-3.1.2-3]",
            WillFlagsWithoutWill => {
                "[MQTT-3.1.2-11] [MQTT-3.1.2-13] (5.0), [MQTT-3.1.2-13] [MQTT-3.1.2-15] (3.1.1)"
            }
            WillQos3 => "[MQTT-3.1.2-12] (5.0), [MQTT-3.1.2-14] (3.1.1)",
            PasswordWithoutUsername => "[MQTT-3.1.2-22] (3.1.1)",
            PublishQos3 => "[MQTT-3.3.1-4]",
            DupWithQos0 => "[MQTT-3.3.1-2]",
            TopicNameWildcard => "[MQTT-3.3.2-2]",
            EmptyTopicName => {
                "MQTT 5.0 §3.3.2.3.4: zero-length Topic Name without a Topic Alias; [MQTT-4.7.3-1] (3.1.1)"
            }
            NoSubscribeFilters => "[MQTT-3.8.3-2] (5.0), [MQTT-3.8.3-3] (3.1.1)",
            SubscriptionOptionsReserved => "[MQTT-3.8.3-5] (5.0), [MQTT-3-8.3-4] (3.1.1)",
            SubscriptionQos3 => {
                "MQTT 5.0 §3.8.3.1: Maximum QoS 3 is a Protocol Error; [MQTT-3-8.3-4] (3.1.1)"
            }
            RetainHandling3 => "MQTT 5.0 §3.8.3.1: Retain Handling 3 is a Protocol Error",
            NoUnsubscribeFilters => "[MQTT-3.10.3-2]",
            ReasonCodeNotAllowed(_) => {
                "MQTT 5.0 §2.4: the packet must use one of its own reason codes; 3.1.1 §3.2.2.3: \
                 CONNACK return codes 6-255 are reserved; [MQTT-3.9.3-2] (3.1.1): SUBACK return \
                 codes other than 0x00, 0x01, 0x02 and 0x80 are reserved"
            }
            ConnAckReservedFlags => "[MQTT-3.2.2-1] (3.1.1): reserved CONNACK flags must be 0",
            InvalidWillTopic => {
                "[MQTT-3.1.3-11] (5.0), [MQTT-3.1.3-10] (3.1.1): the Will Topic is a Topic Name, \
                 so no wildcards ([MQTT-4.7.0-1]) and at least one character ([MQTT-4.7.3-1])"
            }
            SessionPresentWithError => {
                "[MQTT-3.2.2-6] (5.0), [MQTT-3.2.2-4] (3.1.1): a refused CONNACK has Session Present 0"
            }
            NoReasonCodes(_) => {
                "[MQTT-3.8.4-6] (5.0), [MQTT-3.8.4-5] (3.1.1), MQTT 5.0 §3.11.3: one reason code per \
                 Topic Filter, and SUBSCRIBE / UNSUBSCRIBE carry at least one filter"
            }
        }
    }

    /// The MQTT 3.1 / 3.1.1 CONNACK return code for this violation, where the spec asks for one
    /// (only an unsupported protocol level, [MQTT-3.1.2-2]); otherwise a v3 client is just
    /// disconnected.
    pub fn connack_v3(self) -> Option<u8> {
        match self {
            DecodeError::UnsupportedProtocolVersion => Some(1),
            _ => None,
        }
    }

    /// What to send before closing. `version` is the connection's protocol level if known
    /// (the decoder learns it from CONNECT, even from a CONNECT that fails later), and
    /// `connected` whether a CONNACK was already sent.
    pub fn response(self, version: Option<ProtocolVersion>, connected: bool) -> Response {
        // Nothing at all for a connection that does not speak MQTT ([MQTT-3.1.2-1], [MQTT-3.1.0-1]).
        if matches!(
            self,
            DecodeError::InvalidProtocolName | DecodeError::FirstPacketNotConnect
        ) {
            return Response::Close;
        }
        match (version, connected) {
            (Some(ProtocolVersion::V5), false) => Response::ConnAck(self.reason_code()),
            (Some(ProtocolVersion::V5), true) => Response::Disconnect(self.reason_code()),
            // An unsupported level: answer in the 3.1.1 format, which every version can read.
            (_, false) => match self.connack_v3() {
                Some(_) => Response::ConnAck(self.reason_code()),
                None => Response::Close,
            },
            (_, true) => Response::Close,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_follow_the_version_and_phase() {
        use DecodeError::*;
        let v5 = Some(ProtocolVersion::V5);
        let v4 = Some(ProtocolVersion::V311);
        assert_eq!(
            PublishQos3.response(v5, true),
            Response::Disconnect(ReasonCode::MalformedPacket)
        );
        assert_eq!(
            ZeroPacketId.response(v5, true),
            Response::Disconnect(ReasonCode::ProtocolError)
        );
        assert_eq!(
            PacketTooLarge.response(v5, false),
            Response::ConnAck(ReasonCode::PacketTooLarge)
        );
        assert_eq!(PublishQos3.response(v4, true), Response::Close);
        assert_eq!(
            UnsupportedProtocolVersion.response(None, false),
            Response::ConnAck(ReasonCode::UnsupportedProtocolVersion)
        );
        assert_eq!(InvalidProtocolName.response(v5, false), Response::Close);
        assert_eq!(TopicAliasZero.reason_code(), ReasonCode::TopicAliasInvalid);
        assert_eq!(
            TopicNameWildcard.reason_code(),
            ReasonCode::TopicNameInvalid
        );
    }
}
