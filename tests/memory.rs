//! SPEC §7 memory: a 24-shard table of 4M u64 -> 8 B entries stays under 2x its raw payload
//! (16 B per entry) in host memory on the CPU backend, and the device's account of table
//! memory matches the shards' actual slots.

use warpgrid::workload::{uniform_keys, value_of};
use warpgrid::{Batch, Device, Table, TableConfig};

#[test]
fn a_4m_entry_table_stays_under_twice_its_payload() {
    let device = Device::cpu().unwrap();
    let mut table = Table::create(&device, TableConfig::new("mem")).unwrap();
    let keys = uniform_keys(4_000_000, 5);
    for chunk in keys.chunks(1 << 16) {
        let mut batch = Batch::with_capacity(8, chunk.len());
        for &k in chunk {
            batch.put(k, &value_of(k)).unwrap();
        }
        table.apply(&batch).unwrap();
    }
    let st = table.stats();
    assert_eq!(st.items, 4_000_000);
    let raw = st.items * 16;
    assert_eq!(
        device.table_bytes(),
        st.slots * 16,
        "the account covers keys and values arrays"
    );
    assert!(
        device.table_bytes() < 2 * raw,
        "{} bytes for {raw} bytes of payload",
        device.table_bytes()
    );
    device.release_cached_buffers();
    drop(table);
    assert_eq!(
        device.table_bytes(),
        0,
        "dropping a table returns its memory to the account"
    );
}
