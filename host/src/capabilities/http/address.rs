//! Which IP addresses outbound HTTP may connect to. The host resolves every name itself, checks
//! each address here, and connects only to an address it checked, so a name cannot be pointed
//! at the host's own network between the check and the connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of address a name resolved to, when it is not an ordinary public one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// A public address: always allowed.
    Public,
    /// The host itself (127.0.0.0/8, ::1).
    Loopback,
    /// A private network (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7).
    Private,
    /// Link-local (169.254/16, fe80::/10).
    LinkLocal,
    /// A cloud provider's instance metadata service (169.254.169.254, fd00:ec2::254), which
    /// hands out the machine's own credentials: never allowed.
    CloudMetadata,
    /// An address no request should go to: unspecified, multicast, broadcast, reserved.
    Unroutable,
}

impl AddressClass {
    /// Classifies `ip`; IPv4 addresses embedded in IPv6 (mapped, NAT64, 6to4) count as the IPv4
    /// address they carry.
    pub fn of(ip: IpAddr) -> AddressClass {
        match ip {
            IpAddr::V4(v4) => classify_v4(v4),
            IpAddr::V6(v6) => match embedded_v4(v6) {
                Some(v4) => classify_v4(v4),
                None => classify_v6(v6),
            },
        }
    }

    /// May a source connect to an address of this class? Private ones only when the source
    /// sets `allow_private_addresses`.
    pub fn allowed(self, allow_private_addresses: bool) -> bool {
        match self {
            AddressClass::Public => true,
            AddressClass::Loopback | AddressClass::Private | AddressClass::LinkLocal => {
                allow_private_addresses
            }
            AddressClass::CloudMetadata | AddressClass::Unroutable => false,
        }
    }

    /// The class in words, for a denial.
    pub fn describe(self) -> &'static str {
        match self {
            AddressClass::Public => "a public address",
            AddressClass::Loopback => "a loopback address",
            AddressClass::Private => "a private-network address",
            AddressClass::LinkLocal => "a link-local address",
            AddressClass::CloudMetadata => "the cloud metadata service",
            AddressClass::Unroutable => "an unroutable address",
        }
    }
}

const METADATA_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, ..] = ip.octets();
    if ip == METADATA_V4 {
        AddressClass::CloudMetadata
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        AddressClass::Private
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || a == 0 || a >= 240 {
        AddressClass::Unroutable
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let first = ip.segments()[0];
    if ip == METADATA_V6 {
        AddressClass::CloudMetadata
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if first & 0xfe00 == 0xfc00 {
        AddressClass::Private
    } else if first & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if ip.is_unspecified() || ip.is_multicast() || first & 0xffc0 == 0xfec0 {
        AddressClass::Unroutable
    } else {
        AddressClass::Public
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`),
/// NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let from =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified() {
        return Some(from(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(from(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(from(s[1], s[2]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(ip: &str) -> AddressClass {
        AddressClass::of(ip.parse().unwrap())
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert_eq!(class(ip), AddressClass::Public, "{ip}");
            assert!(class(ip).allowed(false));
        }
    }

    #[test]
    fn the_hosts_own_networks_need_allow_private_addresses() {
        let cases = [
            ("127.0.0.1", AddressClass::Loopback),
            ("127.9.9.9", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("10.1.2.3", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("100.64.0.1", AddressClass::Private),
            ("fd12:3456::1", AddressClass::Private),
            ("169.254.1.1", AddressClass::LinkLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:10.0.0.1", AddressClass::Private),
            ("64:ff9b::a00:1", AddressClass::Private),
            ("2002:7f00:1::", AddressClass::Loopback),
        ];
        for (ip, expected) in cases {
            assert_eq!(class(ip), expected, "{ip}");
            assert!(!expected.allowed(false), "{ip}");
            assert!(expected.allowed(true), "{ip}");
        }
    }

    #[test]
    fn metadata_and_unroutable_addresses_are_never_allowed() {
        for ip in ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"] {
            assert_eq!(class(ip), AddressClass::CloudMetadata, "{ip}");
            assert!(!class(ip).allowed(true), "{ip}");
        }
        for ip in ["0.0.0.0", "::", "224.0.0.1", "255.255.255.255", "ff02::1"] {
            assert_eq!(class(ip), AddressClass::Unroutable, "{ip}");
            assert!(!class(ip).allowed(true), "{ip}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// An address in one of the IPv4 networks that are never public: (network, prefix length).
    fn non_public_v4() -> impl Strategy<Value = Ipv4Addr> {
        let networks: [(u32, u32); 10] = [
            (0x7f00_0000, 8),  // 127/8
            (0x0a00_0000, 8),  // 10/8
            (0xac10_0000, 12), // 172.16/12
            (0xc0a8_0000, 16), // 192.168/16
            (0xa9fe_0000, 16), // 169.254/16 (with the metadata address)
            (0x6440_0000, 10), // 100.64/10
            (0x0000_0000, 8),  // 0/8
            (0xe000_0000, 4),  // 224/4, multicast
            (0xf000_0000, 4),  // 240/4, reserved and broadcast
            (0xa9fe_a9fe, 32), // 169.254.169.254
        ];
        (0..networks.len(), any::<u32>()).prop_map(move |(i, bits)| {
            let (net, len) = networks[i];
            let host = if len == 32 {
                0
            } else {
                bits & (u32::MAX >> len)
            };
            Ipv4Addr::from(net | host)
        })
    }

    /// An address in one of the IPv6 networks that are never public.
    fn non_public_v6() -> impl Strategy<Value = Ipv6Addr> {
        let networks: [(u128, u32); 5] = [
            (0xfc00 << 112, 7),  // unique local
            (0xfe80 << 112, 10), // link-local
            (0xfec0 << 112, 10), // site-local
            (0xff00 << 112, 8),  // multicast
            (1, 128),            // ::1
        ];
        (0..networks.len(), any::<u128>()).prop_map(move |(i, bits)| {
            let (net, len) = networks[i];
            let host = if len == 128 {
                0
            } else {
                bits & (u128::MAX >> len)
            };
            Ipv6Addr::from(net | host)
        })
    }

    /// The IPv6 forms that carry an IPv4 address.
    fn embeddings(v4: Ipv4Addr) -> Vec<Ipv6Addr> {
        let bits = u32::from(v4) as u128;
        vec![
            v4.to_ipv6_mapped(),
            Ipv6Addr::from((0x0064_ff9b_u128 << 96) | bits),
            Ipv6Addr::from((0x2002_u128 << 112) | (bits << 80)),
        ]
    }

    proptest! {
        #[test]
        fn no_address_of_the_hosts_own_networks_is_public(v4 in non_public_v4()) {
            let class = AddressClass::of(IpAddr::V4(v4));
            prop_assert_ne!(class, AddressClass::Public, "{}", v4);
            prop_assert!(!class.allowed(false), "{}", v4);
            for v6 in embeddings(v4) {
                prop_assert_eq!(AddressClass::of(IpAddr::V6(v6)), class, "{} in {}", v4, v6);
            }
        }

        #[test]
        fn no_non_public_ipv6_address_is_public(v6 in non_public_v6()) {
            let class = AddressClass::of(IpAddr::V6(v6));
            prop_assert_ne!(class, AddressClass::Public, "{}", v6);
            prop_assert!(!class.allowed(false), "{}", v6);
        }

        #[test]
        fn an_embedded_ipv4_address_is_classed_as_itself(bits in any::<u32>()) {
            let v4 = Ipv4Addr::from(bits);
            let class = AddressClass::of(IpAddr::V4(v4));
            for v6 in embeddings(v4) {
                prop_assert_eq!(AddressClass::of(IpAddr::V6(v6)), class, "{} in {}", v4, v6);
            }
        }
    }

    #[test]
    fn the_metadata_service_is_never_allowed_in_any_form() {
        for ip in [IpAddr::V4(METADATA_V4), IpAddr::V6(METADATA_V6)] {
            assert!(!AddressClass::of(ip).allowed(true), "{ip}");
        }
        for v6 in embeddings(METADATA_V4) {
            assert!(!AddressClass::of(IpAddr::V6(v6)).allowed(true), "{v6}");
        }
    }
}
