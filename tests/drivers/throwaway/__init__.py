"""A throwaway driver (protocol ``test_counter``) laid out as a real one: config, driver,
metrics, registration. It lives only in the tests, to prove the driver seam
(``tests/drivers/test_driver_seam.py``): the gateway picks it up from its registration
alone. Each tag counts from the device's ``start`` by its ``step``, one step per poll."""
