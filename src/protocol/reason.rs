//! MQTT 5.0 reason codes (§2.4), which packet may carry which, and their MQTT 3.1 / 3.1.1
//! equivalents (CONNACK return codes, SUBACK return codes). Pure data; used on every shard.

use super::PacketType;

/// Every MQTT 5.0 reason code. 0x00 means Success, Normal disconnection or Granted QoS 0
/// depending on the packet; see the associated constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum ReasonCode {
    #[default]
    Success = 0x00,
    GrantedQos1 = 0x01,
    GrantedQos2 = 0x02,
    DisconnectWithWillMessage = 0x04,
    NoMatchingSubscribers = 0x10,
    NoSubscriptionExisted = 0x11,
    ContinueAuthentication = 0x18,
    ReAuthenticate = 0x19,
    UnspecifiedError = 0x80,
    MalformedPacket = 0x81,
    ProtocolError = 0x82,
    ImplementationSpecificError = 0x83,
    UnsupportedProtocolVersion = 0x84,
    ClientIdentifierNotValid = 0x85,
    BadUserNameOrPassword = 0x86,
    NotAuthorized = 0x87,
    ServerUnavailable = 0x88,
    ServerBusy = 0x89,
    Banned = 0x8A,
    ServerShuttingDown = 0x8B,
    BadAuthenticationMethod = 0x8C,
    KeepAliveTimeout = 0x8D,
    SessionTakenOver = 0x8E,
    TopicFilterInvalid = 0x8F,
    TopicNameInvalid = 0x90,
    PacketIdentifierInUse = 0x91,
    PacketIdentifierNotFound = 0x92,
    ReceiveMaximumExceeded = 0x93,
    TopicAliasInvalid = 0x94,
    PacketTooLarge = 0x95,
    MessageRateTooHigh = 0x96,
    QuotaExceeded = 0x97,
    AdministrativeAction = 0x98,
    PayloadFormatInvalid = 0x99,
    RetainNotSupported = 0x9A,
    QosNotSupported = 0x9B,
    UseAnotherServer = 0x9C,
    ServerMoved = 0x9D,
    SharedSubscriptionsNotSupported = 0x9E,
    ConnectionRateExceeded = 0x9F,
    MaximumConnectTime = 0xA0,
    SubscriptionIdentifiersNotSupported = 0xA1,
    WildcardSubscriptionsNotSupported = 0xA2,
}

use ReasonCode::*;

impl ReasonCode {
    pub const NORMAL_DISCONNECTION: ReasonCode = Success;
    pub const GRANTED_QOS_0: ReasonCode = Success;

    /// All defined codes, in numeric order.
    pub const ALL: [ReasonCode; 43] = [
        Success,
        GrantedQos1,
        GrantedQos2,
        DisconnectWithWillMessage,
        NoMatchingSubscribers,
        NoSubscriptionExisted,
        ContinueAuthentication,
        ReAuthenticate,
        UnspecifiedError,
        MalformedPacket,
        ProtocolError,
        ImplementationSpecificError,
        UnsupportedProtocolVersion,
        ClientIdentifierNotValid,
        BadUserNameOrPassword,
        NotAuthorized,
        ServerUnavailable,
        ServerBusy,
        Banned,
        ServerShuttingDown,
        BadAuthenticationMethod,
        KeepAliveTimeout,
        SessionTakenOver,
        TopicFilterInvalid,
        TopicNameInvalid,
        PacketIdentifierInUse,
        PacketIdentifierNotFound,
        ReceiveMaximumExceeded,
        TopicAliasInvalid,
        PacketTooLarge,
        MessageRateTooHigh,
        QuotaExceeded,
        AdministrativeAction,
        PayloadFormatInvalid,
        RetainNotSupported,
        QosNotSupported,
        UseAnotherServer,
        ServerMoved,
        SharedSubscriptionsNotSupported,
        ConnectionRateExceeded,
        MaximumConnectTime,
        SubscriptionIdentifiersNotSupported,
        WildcardSubscriptionsNotSupported,
    ];

    pub fn from_u8(v: u8) -> Option<ReasonCode> {
        Self::ALL.iter().copied().find(|c| *c as u8 == v)
    }

    pub fn is_error(self) -> bool {
        self as u8 >= 0x80
    }

    /// Whether the spec allows this code in a packet of type `packet` (MQTT 5.0 §2.4 table and
    /// each packet's Reason Code list). Packets without a reason code allow none.
    pub fn allowed_in(self, packet: PacketType) -> bool {
        let v = self as u8;
        match packet {
            PacketType::ConnAck => matches!(
                v,
                0x00 | 0x80..=0x8A | 0x8C | 0x90 | 0x95 | 0x97 | 0x99..=0x9D | 0x9F
            ),
            PacketType::PubAck | PacketType::PubRec => {
                matches!(
                    v,
                    0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99
                )
            }
            PacketType::PubRel | PacketType::PubComp => matches!(v, 0x00 | 0x92),
            PacketType::SubAck => matches!(
                v,
                0x00 | 0x01 | 0x02 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91 | 0x97 | 0x9E | 0xA1 | 0xA2
            ),
            PacketType::UnsubAck => matches!(v, 0x00 | 0x11 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91),
            PacketType::Disconnect => matches!(
                v,
                0x00 | 0x04 | 0x80..=0x83 | 0x87 | 0x89 | 0x8B | 0x8D..=0x90 | 0x93..=0xA2
            ),
            PacketType::Auth => matches!(v, 0x00 | 0x18 | 0x19),
            _ => false,
        }
    }

    /// The MQTT 3.1 / 3.1.1 CONNACK return code for this reason, where one exists
    /// (3.1.1 §3.2.2.3): 0 accepted, 1 unacceptable protocol version, 2 identifier rejected,
    /// 3 server unavailable, 4 bad user name or password, 5 not authorized.
    pub fn to_connack_v3(self) -> Option<u8> {
        Some(match self {
            Success => 0,
            UnsupportedProtocolVersion => 1,
            ClientIdentifierNotValid => 2,
            ServerUnavailable | ServerBusy | ServerShuttingDown => 3,
            BadUserNameOrPassword => 4,
            NotAuthorized | Banned => 5,
            _ => return None,
        })
    }

    /// The reason code a MQTT 3.1 / 3.1.1 CONNACK return code stands for.
    pub fn from_connack_v3(code: u8) -> Option<ReasonCode> {
        Some(match code {
            0 => Success,
            1 => UnsupportedProtocolVersion,
            2 => ClientIdentifierNotValid,
            3 => ServerUnavailable,
            4 => BadUserNameOrPassword,
            5 => NotAuthorized,
            _ => return None,
        })
    }

    /// The MQTT 3.1.1 SUBACK return code: the granted QoS, or 0x80 for any failure.
    pub fn to_suback_v3(self) -> u8 {
        match self {
            Success | GrantedQos1 | GrantedQos2 => self as u8,
            _ => 0x80,
        }
    }

    /// A MQTT 3.1.1 SUBACK return code ([MQTT-3.9.3-2]: only 0x00, 0x01, 0x02 and 0x80).
    pub fn from_suback_v3(code: u8) -> Option<ReasonCode> {
        match code {
            0x00 => Some(Success),
            0x01 => Some(GrantedQos1),
            0x02 => Some(GrantedQos2),
            0x80 => Some(UnspecifiedError),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_maps_to_at_most_one_code() {
        let mut n = 0;
        for b in 0..=255u8 {
            if let Some(c) = ReasonCode::from_u8(b) {
                assert_eq!(c as u8, b);
                n += 1;
            }
        }
        assert_eq!(n, ReasonCode::ALL.len());
    }

    #[test]
    fn per_packet_lists_match_the_spec() {
        // Spot checks from MQTT 5.0 §2.4 and the per-packet reason code tables.
        assert!(SessionTakenOver.allowed_in(PacketType::Disconnect));
        assert!(!SessionTakenOver.allowed_in(PacketType::ConnAck));
        assert!(NoMatchingSubscribers.allowed_in(PacketType::PubAck));
        assert!(!NoMatchingSubscribers.allowed_in(PacketType::PubRel));
        assert!(PacketIdentifierNotFound.allowed_in(PacketType::PubComp));
        assert!(GrantedQos2.allowed_in(PacketType::SubAck));
        assert!(!GrantedQos2.allowed_in(PacketType::UnsubAck));
        assert!(NoSubscriptionExisted.allowed_in(PacketType::UnsubAck));
        assert!(ReAuthenticate.allowed_in(PacketType::Auth));
        assert!(!ServerShuttingDown.allowed_in(PacketType::ConnAck));
        assert!(ServerShuttingDown.allowed_in(PacketType::Disconnect));
        assert!(DisconnectWithWillMessage.allowed_in(PacketType::Disconnect));
        assert!(!Banned.allowed_in(PacketType::Disconnect));
        assert!(!Success.allowed_in(PacketType::Publish));
    }

    #[test]
    fn v3_mappings_round_trip() {
        for code in 0..=5u8 {
            let r = ReasonCode::from_connack_v3(code).unwrap();
            assert_eq!(r.to_connack_v3(), Some(code));
        }
        assert_eq!(ReasonCode::from_connack_v3(6), None);
        for code in [0u8, 1, 2, 0x80] {
            assert_eq!(
                ReasonCode::from_suback_v3(code).unwrap().to_suback_v3(),
                code
            );
        }
        assert_eq!(TopicFilterInvalid.to_suback_v3(), 0x80);
    }
}
