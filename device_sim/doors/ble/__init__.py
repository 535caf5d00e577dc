"""The BLE host: one bless GATT server presenting the personalities given to it."""
