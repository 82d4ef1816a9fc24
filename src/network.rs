//! Source networks: is the caller inside the organisation's verified
//! infrastructure? CIDR lists (IPv4 and IPv6) compiled once into masked
//! prefixes, checked by the intent stage.

use std::net::IpAddr;

/// An address as text, as `Display` writes it, without the formatting
/// machinery for IPv4 (every decision event carries the source address;
/// `Display` was ~7% of a cached decision).
pub fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else { return ip.to_string() };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// A compiled list of CIDR blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkList {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    text: Vec<String>,
}

impl NetworkList {
    /// Compiles `["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]`; errors are `(index, message)`.
    pub fn new(blocks: &[String]) -> Result<NetworkList, (usize, String)> {
        let mut list = NetworkList::default();
        for (i, block) in blocks.iter().enumerate() {
            let (addr, len) = match block.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (block.as_str(), None),
            };
            let ip: IpAddr = addr.parse().map_err(|_| {
                (i, format!("expected a CIDR block like `10.0.0.0/8` or `2001:db8::/32`, found `{block}`"))
            })?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len: u32 = match len {
                None => max,
                Some(l) => l
                    .parse()
                    .ok()
                    .filter(|l| *l <= max)
                    .ok_or_else(|| (i, format!("prefix length in `{block}` must be 0–{max}")))?,
            };
            match ip {
                IpAddr::V4(v4) => {
                    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                    let net = u32::from(v4);
                    if net & !mask != 0 {
                        return Err((
                            i,
                            format!(
                                "`{block}` has host bits set; did you mean `{}/{len}`?",
                                std::net::Ipv4Addr::from(net & mask)
                            ),
                        ));
                    }
                    list.v4.push((net, mask));
                }
                IpAddr::V6(v6) => {
                    let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
                    let net = u128::from(v6);
                    if net & !mask != 0 {
                        return Err((
                            i,
                            format!(
                                "`{block}` has host bits set; did you mean `{}/{len}`?",
                                std::net::Ipv6Addr::from(net & mask)
                            ),
                        ));
                    }
                    list.v6.push((net, mask));
                }
            }
            list.text.push(block.clone());
        }
        Ok(list)
    }

    /// Whether the list has no blocks (then nothing is restricted).
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Whether `ip` is inside one of the blocks. IPv4-mapped IPv6 addresses
    /// were already turned into IPv4 when the request was normalised.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => {
                let a = u32::from(v4);
                self.v4.iter().any(|(net, mask)| a & mask == *net)
            }
            IpAddr::V6(v6) => {
                let a = u128::from(v6);
                self.v6.iter().any(|(net, mask)| a & mask == *net)
            }
        }
    }

    /// The blocks as written, for messages.
    pub fn describe(&self) -> String {
        self.text.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `ip_text` writes every IPv4 address as `Display` does (all one- to
    /// three-digit octets, in every position), and IPv6 through `Display`.
    #[test]
    fn ip_text_is_display() {
        for a in 0..=255u8 {
            for b in [0u8, 7, 10, 99, 100, 255] {
                let ip = IpAddr::from([a, b, 255 - a, a.wrapping_mul(7)]);
                assert_eq!(ip_text(ip), ip.to_string());
            }
        }
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(ip_text(v6), "2001:db8::1");
    }

    /// Deliberately naive: compare the first `len` bits one at a time.
    fn reference(block_ip: IpAddr, len: u32, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> Vec<bool> {
            let bytes: Vec<u8> = match ip {
                IpAddr::V4(v) => v.octets().to_vec(),
                IpAddr::V6(v) => v.octets().to_vec(),
            };
            bytes.iter().flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1)).collect()
        };
        if block_ip.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        let (a, b) = (bits(block_ip), bits(ip));
        (0..len as usize).all(|i| a[i] == b[i])
    }

    #[test]
    fn examples() {
        let l = NetworkList::new(&["10.0.0.0/8".into(), "2001:db8::/32".into(), "192.0.2.7".into()]).unwrap();
        assert!(l.contains("10.200.1.1".parse().unwrap()));
        assert!(!l.contains("11.0.0.1".parse().unwrap()));
        assert!(l.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!l.contains("2001:db9::1".parse().unwrap()));
        assert!(l.contains("192.0.2.7".parse().unwrap()));
        assert!(!l.contains("192.0.2.8".parse().unwrap()));
        assert!(NetworkList::new(&["10.0.0.1/8".into()])
            .unwrap_err()
            .1
            .contains("did you mean `10.0.0.0/8`"));
        assert!(NetworkList::new(&["10.0.0.0/33".into()]).is_err());
        assert!(NetworkList::new(&["ten/8".into()]).is_err());
        assert!(NetworkList::new(&["0.0.0.0/0".into()]).unwrap().contains("1.2.3.4".parse().unwrap()));
    }

    proptest! {
        #[test]
        fn v4_agrees_with_bitwise_reference(net in any::<u32>(), len in 0u32..=32, ip in any::<u32>()) {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let block = IpAddr::V4((net & mask).into());
            let list = NetworkList::new(&[format!("{block}/{len}")]).unwrap();
            let ip = IpAddr::V4(ip.into());
            prop_assert_eq!(list.contains(ip), reference(block, len, ip));
        }

        #[test]
        fn v6_agrees_with_bitwise_reference(net in any::<u128>(), len in 0u32..=128, ip in any::<u128>(), near in any::<bool>()) {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            let block = IpAddr::V6((net & mask).into());
            let list = NetworkList::new(&[format!("{block}/{len}")]).unwrap();
            // Half the time, pick an address inside or next to the block.
            let ip = if near { (net & mask) | (ip & !mask) } else { ip };
            let ip = IpAddr::V6(ip.into());
            prop_assert_eq!(list.contains(ip), reference(block, len, ip));
        }
    }
}
